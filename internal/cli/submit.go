package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/jobspec"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const submitHelp = `cloudml-client submit [-f cloudml.yaml] [flags] [-- COMMAND ARGS...]

Submits a job and prints its id. The spec comes from a cloudml.yaml file (-f),
from flags, or both (flags override the file). A local --code directory is
packed (honouring .cloudmlignore), uploaded once by content digest to the
coordinator's default bucket, and staged on every node; --code gs://... or
file://... uses code already in a bucket.

With --image (or image: in cloudml.yaml), an image that this machine's Docker
has (DOCKER_HOST or the default socket) is first pushed to the coordinator,
which hands it to nodes that lack it: no registry is needed. An image the
coordinator already keeps is not sent again. --push-image=false skips the
push (the nodes have the image or pull it from a registry).

Examples:
  cloudml-client submit -f examples/linreg/cloudml.yaml
  cloudml-client submit --name quick --code ./examples/linreg -- octave-cli train.m
  cloudml-client submit --name sweep --code . --param lr=0.01,0.1 --param lambda=0,1 -- octave-cli train.m`

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type submitFlags struct {
	file, name, code, image, output, objective string
	parallelism, retries                       int
	timeout                                    time.Duration
	params, env, data                          multiFlag
	follow, pushImage                          bool
}

func (a *App) submit(ctx context.Context, args []string) error {
	fs := a.newFlags("submit", submitHelp)
	var f submitFlags
	fs.StringVar(&f.file, "f", "", "job spec file (cloudml.yaml)")
	fs.StringVar(&f.name, "name", "", "job name")
	fs.StringVar(&f.code, "code", "", "code: a local directory, or gs://bucket/prefix, or file:///dir")
	fs.StringVar(&f.image, "image", "", "container image (used by the Docker runtime)")
	fs.StringVar(&f.output, "output", "", "output bucket URL (default: the coordinator's bucket)")
	fs.StringVar(&f.objective, "objective", "", "metric that ranks results, e.g. val_mse or accuracy:max")
	fs.IntVar(&f.parallelism, "parallelism", -1, "max tasks of this job at once (0 = no cap)")
	fs.IntVar(&f.retries, "retries", -1, "retries per failed task")
	fs.DurationVar(&f.timeout, "timeout", 0, "timeout per attempt, e.g. 10m")
	fs.Var(&f.params, "param", "grid parameter NAME=V1,V2,... (repeatable)")
	fs.Var(&f.env, "env", "environment variable NAME=VALUE (repeatable)")
	fs.Var(&f.data, "data", "read-only input NAME=SOURCE, a local path or bucket URL (repeatable)")
	fs.BoolVar(&f.follow, "follow", false, "after submitting, follow the logs like 'logs -f'")
	fs.BoolVar(&f.pushImage, "push-image", true, "push the image from this machine's Docker to the coordinator, if Docker has it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	spec, baseDir, err := f.spec(pos, fs)
	if err != nil {
		return err
	}
	if err := jobspec.Validate(spec); err != nil {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	if err := a.connect(); err != nil {
		return err
	}
	if err := a.resolveSources(ctx, spec, baseDir); err != nil {
		return err
	}
	if spec.Image != "" && f.pushImage {
		if err := a.pushImage(ctx, spec.Image); err != nil {
			return err
		}
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.jobs.SubmitJob(cctx, &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if a.json() {
		if err := a.printJSON(resp.Job); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.Stdout, resp.Job.Id)
		fmt.Fprintf(a.Stderr, "submitted %s: %d tasks; follow with 'cloudml-client logs -f %s'\n", resp.Job.Id, resp.Job.TaskCount, resp.Job.Id)
	}
	if f.follow {
		return a.logs(ctx, []string{"-f", resp.Job.Id})
	}
	return nil
}

// spec builds the job spec from the file (if any) and the flags. It returns
// the directory local paths are relative to.
func (f *submitFlags) spec(pos []string, fs *flag.FlagSet) (*cloudmlv1.JobSpec, string, error) {
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
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["name"] {
		spec.Name = strings.ToLower(f.name)
	}
	if set["code"] {
		spec.Code, baseDir = &cloudmlv1.Source{Url: f.code}, "."
	}
	if set["image"] {
		spec.Image = f.image
	}
	if set["output"] {
		spec.Output = f.output
	}
	if f.parallelism >= 0 {
		spec.Parallelism = int32(f.parallelism)
	}
	if f.retries >= 0 {
		spec.Retries = int32(f.retries)
	}
	if set["timeout"] {
		spec.Timeout = durationpb.New(f.timeout)
	}
	if f.objective != "" {
		metric, goal, _ := strings.Cut(f.objective, ":")
		spec.Objective = &cloudmlv1.Objective{Metric: metric, Maximize: goal == "max" || goal == "maximize"}
	}
	if err := f.applyMaps(spec); err != nil {
		return nil, "", err
	}
	if len(pos) > 0 {
		if pos[0] != "--" {
			return nil, "", fmt.Errorf("unexpected argument %q: put the command after --: %w", pos[0], errUsage)
		}
		if len(pos) > 1 {
			spec.Command = pos[1:]
		}
	}
	if f.file == "" && spec.Code == nil {
		return nil, "", fmt.Errorf("give -f cloudml.yaml or --code DIR: %w", errUsage)
	}
	if spec.Name == "" && spec.Code != nil {
		spec.Name = nameFrom(spec.Code.Url)
	}
	return spec, baseDir, nil
}

func (f *submitFlags) applyMaps(spec *cloudmlv1.JobSpec) error {
	for _, p := range f.params {
		name, vals, ok := strings.Cut(p, "=")
		if !ok || name == "" || vals == "" {
			return fmt.Errorf("--param %q: want NAME=V1,V2,...: %w", p, errUsage)
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
			return fmt.Errorf("--env %q: want NAME=VALUE: %w", e, errUsage)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	for _, d := range f.data {
		k, v, ok := strings.Cut(d, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--data %q: want NAME=SOURCE: %w", d, errUsage)
		}
		if spec.Data == nil {
			spec.Data = map[string]*cloudmlv1.Source{}
		}
		spec.Data[k] = &cloudmlv1.Source{Url: v}
	}
	return nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
