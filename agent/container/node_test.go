package container

import (
	"context"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// addContainer puts a task container of asg into the stub.
func addContainer(t *testing.T, d *stubDocker, id string, asg *cloudmlv1.Assignment, exit int, withMount bool) {
	labels, err := Labels(asg)
	if err != nil {
		t.Fatal(err)
	}
	c := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &container.State{ExitCode: exit}, HostConfig: &container.HostConfig{}},
		Config:            &container.Config{Labels: labels},
	}
	if withMount {
		c.Mounts = []container.MountPoint{{Destination: OutputDir, Source: "/vol/" + id}}
	}
	d.mu.Lock()
	d.containers[id] = c
	d.mu.Unlock()
}

func TestNodeFindsListedAndStartedContainersOnce(t *testing.T) {
	d := newStub()
	a1, a2 := testAssignment(), testAssignment()
	a2.Ref = &cloudmlv1.TaskRef{JobId: "sweep-a1b2c3", TaskIndex: 4, Attempt: 1}
	addContainer(t, d, "c1", a1, 0, true)
	d.volumes[Name(a2.GetRef())] = "/vol/by-name"
	found := make(chan *Found, 8)
	n := NewNode(NodeConfig{Docker: d, Logger: testutil.Logger(t), Handle: func(_ context.Context, f *Found) { found <- f }})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	f := <-found
	if f.ContainerID != "c1" || f.OutputDir != "/vol/c1" {
		t.Errorf("listed: %s at %s", f.ContainerID, f.OutputDir)
	}
	if diff := cmp.Diff(a1, f.Assignment, protocmp.Transform()); diff != "" {
		t.Errorf("assignment (-want +got):\n%s", diff)
	}
	// A start event for the listed container again, a container without
	// an assignment label, then a new one whose mount is found by name.
	d.events <- events.Message{Actor: events.Actor{ID: "c1", Attributes: d.containers["c1"].Config.Labels}}
	d.events <- events.Message{Actor: events.Actor{ID: "c0", Attributes: map[string]string{LabelAttempt: "1"}}}
	addContainer(t, d, "c2", a2, 0, false)
	labels, _ := Labels(a2)
	d.events <- events.Message{Actor: events.Actor{ID: "c2", Attributes: labels}}
	f = <-found
	if f.ContainerID != "c2" || f.OutputDir != "/vol/by-name" || f.Assignment.GetRef().GetTaskIndex() != 4 {
		t.Errorf("started: %s at %s, task %d", f.ContainerID, f.OutputDir, f.Assignment.GetRef().GetTaskIndex())
	}
	select {
	case f := <-found:
		t.Errorf("container %s handed over twice", f.ContainerID)
	default:
	}
}

func TestAttachedProcessReadsLogsAndExit(t *testing.T) {
	d := newStub()
	asg := testAssignment()
	addContainer(t, d, "c1", asg, 137, true)
	d.logs["c1"] = muxed([2]string{"stdout", "one\n"}, [2]string{"stderr", "oops\n"}, [2]string{"stdout", "two\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &Found{Assignment: asg, ContainerID: "c1", OutputDir: "/vol/c1", ctx: ctx, docker: d}
	att := f.Attach()
	var out, errs []byte
	var wg sync.WaitGroup
	wg.Go(func() { out, _ = io.ReadAll(att.Process.Stdout()) })
	wg.Go(func() { errs, _ = io.ReadAll(att.Process.Stderr()) })
	wg.Wait()
	code, err := att.Process.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "one\ntwo\n" || string(errs) != "oops\n" || code != 137 {
		t.Errorf("stdout %q stderr %q code %d", out, errs, code)
	}
	if d.waits != 1 {
		t.Errorf("%d ContainerWait calls, want 1 (the log drain's answer serves Wait too)", d.waits)
	}
	if msg := att.ExitMessage(code); !strings.Contains(msg, "killed by SIGKILL (exit code 137)") {
		t.Errorf("exit message = %q", msg)
	}
	if err := att.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cancel() // the agent stops: signals are no longer sent
	if err := att.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(d.killed, []string{"c1:SIGTERM"}) || len(d.containers) != 0 || !cmp.Equal(d.rmVolumes, []string{Name(asg.GetRef())}) {
		t.Errorf("killed %v, containers left %d, volumes removed %v", d.killed, len(d.containers), d.rmVolumes)
	}
}

func TestExitMessages(t *testing.T) {
	for _, tt := range []struct {
		code  int
		oom   bool
		limit int64
		want  string
	}{
		{1, false, 0, "exited with code 1"},
		{137, true, 1 << 20, "killed: out of memory (exit code 137, limit 1048576 bytes): ask for more memory"},
		{143, false, 0, "terminated by SIGTERM (exit code 143)"},
	} {
		if got := exitMessage(tt.code, tt.oom, tt.limit); got != tt.want {
			t.Errorf("exitMessage(%d, %v) = %q, want %q", tt.code, tt.oom, got, tt.want)
		}
	}
}

// TestAttachedProcessRecoversTruncatedFollow: Engine 20.10's follow can end
// before the last of the log; the tail comes from a second, full read, with
// nothing delivered twice.
func TestAttachedProcessRecoversTruncatedFollow(t *testing.T) {
	d := newStub()
	asg := testAssignment()
	addContainer(t, d, "c1", asg, 0, false)
	d.logs["c1"] = muxed([2]string{"stdout", "one\n"}, [2]string{"stderr", "oops\n"}, [2]string{"stdout", "two\nthree\n"})
	d.followLogs = map[string][]byte{"c1": muxed([2]string{"stdout", "one\n"}, [2]string{"stderr", "oops\n"}, [2]string{"stdout", "tw"})}
	f := &Found{Assignment: asg, ContainerID: "c1", OutputDir: "/vol/c1", ctx: context.Background(), docker: d}
	att := f.Attach()
	var out, errs []byte
	var wg sync.WaitGroup
	wg.Go(func() { out, _ = io.ReadAll(att.Process.Stdout()) })
	wg.Go(func() { errs, _ = io.ReadAll(att.Process.Stderr()) })
	wg.Wait()
	if _, err := att.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	if string(out) != "one\ntwo\nthree\n" || string(errs) != "oops\n" {
		t.Errorf("stdout %q stderr %q, want the whole log once", out, errs)
	}
}
