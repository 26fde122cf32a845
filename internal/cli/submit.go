package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/jobspec"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const submitLong = `Submit submits a job and prints its id. The spec comes from a cloudml.yaml
file (-f), from flags, or both (flags override the file); the command goes
after --. A local --code directory is packed (honouring .cloudmlignore),
uploaded once by content digest to the coordinator's default bucket, and
staged on every node; --code gs://... or file://... uses code already in a
bucket. Local --data files and directories are uploaded the same way.

With --image (or image: in cloudml.yaml) the tasks run as Docker Swarm
services. An image that this machine's Docker has (DOCKER_HOST or the
default socket) is first pushed to the coordinator, which hands it to nodes
that lack it: no registry is needed. An image the coordinator already keeps
is not sent again; --push-image=false skips the push (the nodes have the
image or pull it from a registry).

On a terminal, uploads and the push show progress bars, and submit of a
container job then waits, a bar per node, until every swarm node has staged
the job's code, data and image (as docker service create waits for its
service); --detach returns at once. Off a terminal submit never waits.`

const submitExample = `  cloudml-client submit -f examples/linreg/cloudml.yaml
  cloudml-client submit --name quick --code ./examples/linreg -- octave-cli train.m
  cloudml-client submit --code . --param lr=0.01,0.1 --param lambda=0,1 -- octave-cli train.m
  cloudml-client submit -f cloudml.yaml --image cloudml/octave:7 --follow`

// submitFlags are submit's own flags.
type submitFlags struct {
	file, name, code, image, outputBucket, objective string
	parallelism, retries                             int
	timeout                                          time.Duration
	params, env, data                                []string
	follow, pushImage, forcePush, detach             bool
}

func (a *App) submitCmd() *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:     "submit [-f cloudml.yaml] [flags] [-- COMMAND ARGS...]",
		Short:   "Submit a job from cloudml.yaml or flags; prints the job id",
		Long:    submitLong,
		Example: submitExample,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.submit(cmd, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "job spec file (cloudml.yaml)")
	fl.StringVar(&f.name, "name", "", "job name (job ids are NAME-<6 hex>)")
	fl.StringVar(&f.code, "code", "", "code: a local directory, or gs://bucket/prefix, or file:///dir")
	fl.StringVar(&f.image, "image", "", "container image: the tasks run as swarm services")
	fl.StringVar(&f.outputBucket, "output-bucket", "", "bucket URL for the results (default: the coordinator's bucket)")
	fl.StringVar(&f.objective, "objective", "", "metric that ranks results, e.g. val_mse or accuracy:max")
	fl.IntVar(&f.parallelism, "parallelism", -1, "max tasks of this job at once (0 = no cap)")
	fl.IntVar(&f.retries, "retries", -1, "retries per failed task")
	fl.DurationVar(&f.timeout, "timeout", 0, "timeout per attempt, e.g. 10m")
	fl.StringArrayVar(&f.params, "param", nil, "grid parameter NAME=V1,V2,... (repeatable)")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable NAME=VALUE (repeatable)")
	fl.StringArrayVar(&f.data, "data", nil, "read-only input NAME=SOURCE, a local path or bucket URL (repeatable)")
	fl.BoolVar(&f.follow, "follow", false, "after submitting, follow the logs like 'logs -f' (and exit as it does)")
	fl.BoolVar(&f.pushImage, "push-image", true, "push the image from this machine's Docker to the coordinator, if Docker has it")
	fl.BoolVar(&f.forcePush, "force-push", false, "replace an image name another credential pushed (an admin may without it)")
	fl.BoolVarP(&f.detach, "detach", "d", false, "do not wait for the nodes to stage a container job")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml")
	_ = cmd.MarkFlagDirname("code")
	return cmd
}

func (a *App) submit(cmd *cobra.Command, f *submitFlags, args []string) error {
	ctx := cmd.Context()
	spec, baseDir, err := f.spec(cmd, args)
	if err != nil {
		return err
	}
	if err := jobspec.Validate(spec); err != nil {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	prog, wait := a.progress()
	sub, err := c.Submit(ctx, spec, client.SubmitOptions{BaseDir: baseDir, PushImage: f.pushImage, ForcePush: f.forcePush, Progress: prog})
	wait()
	if sub != nil {
		a.submitNotes(sub)
	}
	if err != nil {
		if errors.Is(err, client.ErrPushImage) {
			return fmt.Errorf("%w (retry; or pass --push-image=false if the nodes have it or can pull it from a registry)", err)
		}
		return err
	}
	job := sub.Job
	if a.json() {
		if err := a.printJSON(job); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.Stdout, job.GetId())
		fmt.Fprintf(a.Stderr, "submitted %s: %s; follow with 'cloudml-client logs -f %s'\n",
			job.GetId(), plural(int(job.GetTaskCount()), "task"), job.GetId())
	}
	if spec.GetImage() != "" && prog != nil && !f.detach {
		if err := a.waitStaged(cmd, job.GetId()); err != nil {
			return err
		}
	}
	if f.follow {
		return a.followLogs(ctx, job.GetId(), logFlags{follow: true, task: -1, reconnect: defaultReconnect})
	}
	return nil
}

// submitNotes says on stderr what was not sent and what was pushed.
func (a *App) submitNotes(sub *client.Submitted) {
	for _, up := range sub.Uploads {
		if up.Skipped {
			fmt.Fprintf(a.Stderr, "%s: already in the bucket (%s)\n", up.Path, up.URL)
		}
	}
	im := sub.Image
	if im == nil || a.json() {
		return
	}
	switch {
	case im.DockerError != nil:
		fmt.Fprintf(a.Stderr, "note: could not ask the local Docker about image %s (%v); the nodes will look for it themselves\n", im.Name, im.DockerError)
	case im.NotLocal:
	case im.AlreadyPresent:
		fmt.Fprintf(a.Stderr, "image %s: already on the coordinator (%s)\n", im.Name, shortID(im.ID))
	case im.ID != "":
		secs := max(im.Elapsed.Seconds(), 1e-3)
		fmt.Fprintf(a.Stderr, "pushed image %s (%s): %.1f MiB in %s, %.1f MiB/s\n", im.Name, shortID(im.ID), mib(im.Bytes),
			im.Elapsed.Round(100*time.Millisecond), mib(im.Bytes)/secs)
	}
}

// waitStaged shows each node's staging of a container job until it is over.
func (a *App) waitStaged(cmd *cobra.Command, id string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	prog, wait := a.progress()
	job, err := c.WaitStaged(cmd.Context(), id, client.StageOptions{Progress: prog})
	wait()
	if err != nil {
		if cmd.Context().Err() != nil {
			return nil // interrupted: the job is submitted all the same
		}
		return err
	}
	if len(job.GetStages()) == 0 && job.GetState() == cloudmlv1.JobState_JOB_STATE_PENDING && len(job.GetTasks()) > 0 {
		fmt.Fprintf(a.Stderr, "note: no node is staging %s yet: %s\n", id, job.GetTasks()[0].GetReason())
	}
	return nil
}

// spec builds the job spec from the file (if any) and the flags. It returns
// the directory local paths are relative to.
func (f *submitFlags) spec(cmd *cobra.Command, args []string) (*cloudmlv1.JobSpec, string, error) {
	spec := &cloudmlv1.JobSpec{}
	baseDir := "."
	if f.file != "" {
		data, err := os.ReadFile(f.file)
		if err != nil {
			return nil, "", fmt.Errorf("read job spec: %w", err)
		}
		if spec, err = jobspec.Parse(data, f.file); err != nil {
			return nil, "", fmt.Errorf("%w: %w", err, errUsage)
		}
		baseDir = filepath.Dir(f.file)
	}
	set := cmd.Flags().Changed
	if set("name") {
		spec.Name = strings.ToLower(f.name)
	}
	if set("code") {
		spec.Code, baseDir = &cloudmlv1.Source{Url: f.code}, "."
	}
	if set("image") {
		spec.Image = f.image
	}
	if set("output-bucket") {
		spec.Output = f.outputBucket
	}
	if f.parallelism >= 0 {
		spec.Parallelism = int32(f.parallelism)
	}
	if f.retries >= 0 {
		spec.Retries = int32(f.retries)
	}
	if set("timeout") {
		spec.Timeout = durationpb.New(f.timeout)
	}
	if f.objective != "" {
		metric, goal, _ := strings.Cut(f.objective, ":")
		spec.Objective = &cloudmlv1.Objective{Metric: metric, Maximize: goal == "max" || goal == "maximize"}
	}
	if err := f.applyMaps(spec); err != nil {
		return nil, "", err
	}
	if dash := cmd.ArgsLenAtDash(); dash != 0 && len(args) > 0 {
		return nil, "", usageErrorf("unexpected argument %q: put the command after --", args[0])
	}
	if len(args) > 0 {
		spec.Command = args
	}
	if f.file == "" && spec.Code == nil && len(spec.Command) == 0 {
		return nil, "", usageErrorf("give -f cloudml.yaml, --code DIR, or a command after --")
	}
	switch {
	case spec.Name != "":
	case spec.Code != nil:
		spec.Name = nameFrom(spec.Code.Url)
	case len(spec.Command) > 0:
		spec.Name = nameFrom(spec.Command[0]) // a job with no code: name it after its program
	}
	return spec, baseDir, nil
}

func (f *submitFlags) applyMaps(spec *cloudmlv1.JobSpec) error {
	for _, p := range f.params {
		name, vals, ok := strings.Cut(p, "=")
		if !ok || name == "" || vals == "" {
			return usageErrorf("--param %q: want NAME=V1,V2,...", p)
		}
		if spec.Sweep == nil {
			spec.Sweep = &cloudmlv1.Sweep{}
		}
		if spec.Sweep.Grid == nil {
			spec.Sweep.Grid = map[string]*cloudmlv1.ParamValues{}
		}
		spec.Sweep.Grid[name] = &cloudmlv1.ParamValues{Values: strings.Split(vals, ",")}
	}
	for _, e := range f.env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return usageErrorf("--env %q: want NAME=VALUE", e)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	for _, d := range f.data {
		k, v, ok := strings.Cut(d, "=")
		if !ok || k == "" || v == "" {
			return usageErrorf("--data %q: want NAME=SOURCE", d)
		}
		if spec.Data == nil {
			spec.Data = map[string]*cloudmlv1.Source{}
		}
		spec.Data[k] = &cloudmlv1.Source{Url: v}
	}
	return nil
}

// nameFrom derives a job name from a code location ("./examples/linreg" → "linreg").
func nameFrom(code string) string {
	base := strings.ToLower(filepath.Base(strings.TrimRight(code, "/")))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, base)
	name = strings.Trim(name, "-")
	if len(name) > 40 {
		name = name[:40]
	}
	if name == "" {
		return "job"
	}
	return name
}
