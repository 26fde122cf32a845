package container

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/agent/attempt"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Paths inside a task container.
const (
	// CodeDir is the staged code, read-only; the working directory.
	CodeDir = "/cloudml/code"
	// DataDir holds each staged data source, read-only, by name.
	DataDir = "/cloudml/data"
	// OutputDir is the attempt's output volume.
	OutputDir = "/cloudml/output"
)

// Labels on every service and task container.
const (
	LabelJob        = "cloudml.job"
	LabelTask       = "cloudml.task"
	LabelAttempt    = "cloudml.attempt"
	LabelAssignment = "cloudml.assignment"
)

// ErrBadAssignment is wrapped when an assignment cannot become a service,
// or a container's labels do not hold one.
var ErrBadAssignment = errors.New("bad container assignment")

// Name is the service and output volume name of an attempt:
// cml-<job>-<task>-<attempt>. A job id that is too long, or has characters
// a service name may not hold, is cut and made unique by a hash of it.
func Name(ref *cloudmlv1.TaskRef) string {
	suffix := fmt.Sprintf("-%d-%d", ref.GetTaskIndex(), ref.GetAttempt())
	job := ref.GetJobId()
	if len("cml-")+len(job)+len(suffix) <= 63 && dnsSafe(job) {
		return "cml-" + job + suffix
	}
	sum := sha256.Sum256([]byte(job))
	tag := "-" + hex.EncodeToString(sum[:4])
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, job)
	room := 63 - len("cml-") - len(tag) - len(suffix)
	if len(clean) > room {
		clean = clean[:room]
	}
	clean = strings.Trim(clean, "-")
	if clean == "" {
		return "cml" + tag + suffix
	}
	return "cml-" + clean + tag + suffix
}

func dnsSafe(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// JobDir is where a node's agent links a job's staged inputs, relative to
// its work directory: jobs/<job>/code and jobs/<job>/data/<name> point at
// the cache entries StageJob staged.
func JobDir(job string) string { return filepath.Join("jobs", job) }

// SpecOptions are the node-independent parts of a service spec.
type SpecOptions struct {
	// SwarmRoot is where <swarm node id> links to each agent's work dir.
	SwarmRoot string
	// Mounts are added to the container (the Octave init dir).
	Mounts []mount.Mount
	// Env is added before the assignment's env ("KEY=value").
	Env []string
}

// Labels returns the labels of asg's service and container.
func Labels(asg *cloudmlv1.Assignment) (map[string]string, error) {
	raw, err := proto.Marshal(asg)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", ErrBadAssignment, err)
	}
	ref := asg.GetRef()
	return map[string]string{
		LabelJob:        ref.GetJobId(),
		LabelTask:       strconv.Itoa(int(ref.GetTaskIndex())),
		LabelAttempt:    strconv.Itoa(int(ref.GetAttempt())),
		LabelAssignment: base64.StdEncoding.EncodeToString(raw),
	}, nil
}

// Decode returns the assignment a container's labels carry.
func Decode(labels map[string]string) (*cloudmlv1.Assignment, error) {
	enc, ok := labels[LabelAssignment]
	if !ok {
		return nil, fmt.Errorf("%w: no %s label", ErrBadAssignment, LabelAssignment)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s label: %v", ErrBadAssignment, LabelAssignment, err)
	}
	asg := &cloudmlv1.Assignment{}
	if err := proto.Unmarshal(raw, asg); err != nil {
		return nil, fmt.Errorf("%w: %s label: %v", ErrBadAssignment, LabelAssignment, err)
	}
	ref := asg.GetRef()
	if ref == nil || labels[LabelJob] != ref.GetJobId() ||
		labels[LabelTask] != strconv.Itoa(int(ref.GetTaskIndex())) ||
		labels[LabelAttempt] != strconv.Itoa(int(ref.GetAttempt())) {
		return nil, fmt.Errorf("%w: the labels and the assignment name different attempts", ErrBadAssignment)
	}
	return asg, nil
}

// ServiceSpec is the one-replica service that runs asg's attempt. See the
// package documentation for the layout.
func ServiceSpec(asg *cloudmlv1.Assignment, opts SpecOptions) (swarm.ServiceSpec, error) {
	ref := asg.GetRef()
	job := ref.GetJobId()
	switch {
	case ref == nil || job == "" || !filepath.IsLocal(job) || filepath.Base(job) != job:
		return swarm.ServiceSpec{}, fmt.Errorf("%w: invalid job id %q", ErrBadAssignment, job)
	case asg.GetImage() == "":
		return swarm.ServiceSpec{}, fmt.Errorf("%w: no image", ErrBadAssignment)
	case len(asg.GetCommand()) == 0:
		return swarm.ServiceSpec{}, fmt.Errorf("%w: empty command", ErrBadAssignment)
	case !filepath.IsAbs(opts.SwarmRoot):
		return swarm.ServiceSpec{}, fmt.Errorf("%w: swarm root %q is not absolute", ErrBadAssignment, opts.SwarmRoot)
	}
	labels, err := Labels(asg)
	if err != nil {
		return swarm.ServiceSpec{}, err
	}
	// The {{.Node.ID}} template is expanded by the node that runs the task,
	// so each container sees its own node's staged copy.
	jobDir := path.Join(opts.SwarmRoot, "{{.Node.ID}}", filepath.ToSlash(JobDir(job)))
	var mounts []mount.Mount
	if asg.GetCode().GetUrl() != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: path.Join(jobDir, "code"), Target: CodeDir, ReadOnly: true})
	}
	names := sortedKeys(asg.GetData())
	for _, name := range names {
		if !filepath.IsLocal(name) || strings.ContainsRune(name, '/') {
			return swarm.ServiceSpec{}, fmt.Errorf("%w: data name %q must be a plain file name", ErrBadAssignment, name)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: path.Join(jobDir, "data", name), Target: path.Join(DataDir, name), ReadOnly: true})
	}
	name := Name(ref)
	mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: OutputDir,
		VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{
			LabelJob: labels[LabelJob], LabelTask: labels[LabelTask], LabelAttempt: labels[LabelAttempt],
		}}})
	mounts = append(mounts, opts.Mounts...)

	var placement *swarm.Placement
	for _, id := range asg.GetAvoidSwarmNodes() {
		if placement == nil {
			placement = &swarm.Placement{}
		}
		placement.Constraints = append(placement.Constraints, "node.id!="+id)
	}
	one := uint64(1)
	cpus := asg.GetResources().GetCpus()
	if cpus <= 0 {
		cpus = 1
	}
	res := &swarm.Resources{NanoCPUs: int64(cpus * 1e9), MemoryBytes: asg.GetResources().GetMemoryBytes()}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:   asg.GetImage(),
				Labels:  labels,
				Command: asg.GetCommand(),
				Env:     environ(asg, len(names) > 0, opts.Env),
				Dir:     CodeDir,
				Mounts:  mounts,
			},
			Resources:     &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: res.NanoCPUs, MemoryBytes: res.MemoryBytes}, Reservations: res},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     placement,
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP},
	}, nil
}

// environ is the container's environment: HOME, the extra env, the
// assignment's env, then the CLOUDML_ variables; later entries win.
func environ(asg *cloudmlv1.Assignment, hasData bool, extra []string) []string {
	dataDir := ""
	if hasData {
		dataDir = DataDir
	}
	return attempt.Environ(append([]string{"HOME=/tmp"}, extra...), asg, OutputDir, dataDir)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
