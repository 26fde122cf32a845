package container

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testAssignment() *cloudmlv1.Assignment {
	return &cloudmlv1.Assignment{
		Ref:       &cloudmlv1.TaskRef{JobId: "sweep-a1b2c3", TaskIndex: 3, Attempt: 2},
		TaskCount: 8,
		Params:    map[string]string{"lr": "0.1", "batch-size": "32"},
		Command:   []string{"octave-cli", "model.m"},
		Env:       map[string]string{"FOO": "bar", "HOME": "/home/user"},
		Code:      &cloudmlv1.Source{Url: "gs://b/code.tar.gz", Digest: "sha256:" + strings.Repeat("a", 64)},
		Data:      map[string]*cloudmlv1.Source{"train": {Url: "gs://b/train/"}},
		Output:    "gs://out/",
		Timeout:   durationpb.New(90e9),
		Image:     "cloudml/octave:7",
		Resources: &cloudmlv1.Resources{Cpus: 1.5, MemoryBytes: 1 << 30},
	}
}

func TestServiceSpec(t *testing.T) {
	asg := testAssignment()
	extra := mount.Mount{Type: mount.TypeBind, Source: "/x", Target: "/cloudml/octave", ReadOnly: true}
	spec, err := ServiceSpec(asg, SpecOptions{SwarmRoot: "/var/lib/cloudml/swarm", Mounts: []mount.Mount{extra}, Env: []string{"OCTAVE_SITE_INITFILE=/cloudml/octave/octaverc"}})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "cml-sweep-a1b2c3-3-2" {
		t.Errorf("name = %q", spec.Name)
	}
	if got := *spec.Mode.Replicated.Replicas; got != 1 || spec.Mode.ReplicatedJob != nil || spec.Mode.Global != nil {
		t.Errorf("mode = %+v, want replicated with 1 replica", spec.Mode)
	}
	if spec.TaskTemplate.RestartPolicy.Condition != swarm.RestartPolicyConditionNone {
		t.Errorf("restart condition = %q", spec.TaskTemplate.RestartPolicy.Condition)
	}
	if len(spec.EndpointSpec.Ports) != 0 {
		t.Errorf("published ports: %v", spec.EndpointSpec.Ports)
	}
	cs := spec.TaskTemplate.ContainerSpec
	for _, labels := range []map[string]string{spec.Labels, cs.Labels} {
		if labels[LabelJob] != "sweep-a1b2c3" || labels[LabelTask] != "3" || labels[LabelAttempt] != "2" {
			t.Errorf("labels = %v", labels)
		}
		got, err := Decode(labels)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(asg, got, protocmp.Transform()); diff != "" {
			t.Errorf("decoded assignment (-want +got):\n%s", diff)
		}
	}
	if cs.Image != "cloudml/octave:7" || cs.Dir != CodeDir || !cmp.Equal(cs.Command, []string{"octave-cli", "model.m"}) {
		t.Errorf("image %q dir %q command %q", cs.Image, cs.Dir, cs.Command)
	}
	wantEnv := []string{
		"HOME=/home/user", "OCTAVE_SITE_INITFILE=/cloudml/octave/octaverc", "FOO=bar",
		"CLOUDML_JOB_ID=sweep-a1b2c3", "CLOUDML_TASK_INDEX=3", "CLOUDML_TASK_COUNT=8", "CLOUDML_ATTEMPT=2",
		"CLOUDML_OUTPUT_DIR=/cloudml/output", "CLOUDML_DATA_DIR=/cloudml/data",
		"CLOUDML_PARAM_BATCH_SIZE=32", "CLOUDML_PARAM_LR=0.1",
	}
	if diff := cmp.Diff(wantEnv, cs.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: "/var/lib/cloudml/swarm/{{.Node.ID}}/jobs/sweep-a1b2c3/code", Target: "/cloudml/code", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/var/lib/cloudml/swarm/{{.Node.ID}}/jobs/sweep-a1b2c3/data/train", Target: "/cloudml/data/train", ReadOnly: true},
		{Type: mount.TypeVolume, Source: "cml-sweep-a1b2c3-3-2", Target: "/cloudml/output",
			VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{LabelJob: "sweep-a1b2c3", LabelTask: "3", LabelAttempt: "2"}}},
		extra,
	}
	if diff := cmp.Diff(wantMounts, cs.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	res := spec.TaskTemplate.Resources
	if res.Reservations.NanoCPUs != 1.5e9 || res.Limits.NanoCPUs != 1.5e9 ||
		res.Reservations.MemoryBytes != 1<<30 || res.Limits.MemoryBytes != 1<<30 {
		t.Errorf("resources = %+v %+v", res.Reservations, res.Limits)
	}
}

func TestServiceSpecDefaultsAndErrors(t *testing.T) {
	asg := testAssignment()
	asg.Resources, asg.Data = nil, nil
	spec, err := ServiceSpec(asg, SpecOptions{SwarmRoot: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.TaskTemplate.Resources.Reservations.NanoCPUs; got != 1e9 {
		t.Errorf("default cpus reservation = %d, want 1e9", got)
	}
	for _, kv := range spec.TaskTemplate.ContainerSpec.Env {
		if strings.HasPrefix(kv, "CLOUDML_DATA_DIR=") {
			t.Errorf("CLOUDML_DATA_DIR set without data: %s", kv)
		}
	}
	bad := []func(a *cloudmlv1.Assignment){
		func(a *cloudmlv1.Assignment) { a.Image = "" },
		func(a *cloudmlv1.Assignment) { a.Command = nil },
		func(a *cloudmlv1.Assignment) { a.Ref.JobId = "../x" },
		func(a *cloudmlv1.Assignment) { a.Data = map[string]*cloudmlv1.Source{"a/b": {Url: "gs://b/x"}} },
	}
	for i, mutate := range bad {
		a := testAssignment()
		mutate(a)
		if _, err := ServiceSpec(a, SpecOptions{SwarmRoot: "/r"}); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

func TestNameFitsAndStaysUnique(t *testing.T) {
	long := strings.Repeat("very-long-job-name-", 6) + "abc123"
	names := map[string]string{}
	for _, job := range []string{"j-1", long, long + "x", "my_job.v2-abc123", "my-job-v2-abc123"} {
		n := Name(&cloudmlv1.TaskRef{JobId: job, TaskIndex: 99999, Attempt: 12})
		if len(n) > 63 {
			t.Errorf("Name(%q) = %q is %d chars", job, n, len(n))
		}
		if !dnsSafe(n) || !strings.HasSuffix(n, "-99999-12") || !strings.HasPrefix(n, "cml-") {
			t.Errorf("Name(%q) = %q is not a valid service name", job, n)
		}
		if prev, dup := names[n]; dup {
			t.Errorf("jobs %q and %q share the name %q", prev, job, n)
		}
		names[n] = job
	}
	if got := Name(&cloudmlv1.TaskRef{JobId: "j-1", TaskIndex: 0, Attempt: 1}); got != "cml-j-1-0-1" {
		t.Errorf("plain name = %q", got)
	}
}

func TestDecodeRejectsMismatchedLabels(t *testing.T) {
	labels, err := Labels(testAssignment())
	if err != nil {
		t.Fatal(err)
	}
	labels[LabelTask] = "4"
	if _, err := Decode(labels); err == nil {
		t.Error("labels naming another task decoded")
	}
	if _, err := Decode(map[string]string{LabelAssignment: "!!"}); err == nil {
		t.Error("bad base64 decoded")
	}
}

func TestServiceSpecAvoidsDownNodes(t *testing.T) {
	asg := testAssignment()
	spec, err := ServiceSpec(asg, SpecOptions{SwarmRoot: "/var/lib/cloudml/swarm"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.TaskTemplate.Placement != nil {
		t.Errorf("placement %+v without nodes to avoid", spec.TaskTemplate.Placement)
	}
	asg.AvoidSwarmNodes = []string{"n1", "n2"}
	spec, err = ServiceSpec(asg, SpecOptions{SwarmRoot: "/var/lib/cloudml/swarm"})
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.TaskTemplate.Placement.Constraints; len(got) != 2 || got[0] != "node.id!=n1" || got[1] != "node.id!=n2" {
		t.Errorf("constraints = %v", got)
	}
}
