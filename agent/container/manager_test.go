package container

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// runManager starts m.Run and stops it at the end of the test.
func runManager(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func newTestManager(t *testing.T, d *stubDocker, rep *reports) *Manager {
	return NewManager(ManagerConfig{
		Docker: d, Reporter: rep, Spec: SpecOptions{SwarmRoot: "/r"},
		Poll: 5 * time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Logger: testutil.Logger(t),
	})
}

func (m *Manager) watching(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.watched[name]
	return ok
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCreateServiceIsIdempotentAndRemoves(t *testing.T) {
	d := newStub()
	m := newTestManager(t, d, newReports())
	asg := testAssignment()
	ctx := context.Background()
	for range 2 {
		if err := m.CreateService(ctx, asg); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.services) != 1 || d.creates != 2 {
		t.Fatalf("services = %d after %d creates, want 1", len(d.services), d.creates)
	}
	if !m.watching("cml-sweep-a1b2c3-3-2") {
		t.Error("new service not watched")
	}
	for range 2 { // the second removal finds nothing, which is fine
		if err := m.RemoveService(ctx, asg.GetRef()); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.services) != 0 || len(d.removed) != 1 || m.watching("cml-sweep-a1b2c3-3-2") {
		t.Errorf("after remove: services %v removed %v", d.services, d.removed)
	}
}

func TestRejectedTaskIsReportedFailed(t *testing.T) {
	d := newStub()
	d.nodes["n1"] = "worker-1"
	d.tasks = func(id string) []swarm.Task {
		return []swarm.Task{{ServiceID: id, NodeID: "n1", Status: swarm.TaskStatus{
			State: swarm.TaskStateRejected, Err: "No such image: nope/x:1"}}}
	}
	rep := newReports()
	m := newTestManager(t, d, rep)
	runManager(t, m)
	asg := testAssignment()
	asg.Image = "nope/x:1"
	if err := m.CreateService(context.Background(), asg); err != nil {
		t.Fatal(err)
	}
	<-rep.changed
	rep.mu.Lock()
	got := rep.got[0]
	rep.mu.Unlock()
	want := `image "nope/x:1" is not on node worker-1 and no registry serves it: load it on the nodes or push it to a registry`
	if got.GetState() != cloudmlv1.TaskState_TASK_STATE_FAILED || got.GetExitCode() != -1 || got.GetMessage() != want {
		t.Errorf("report = %v %d %q, want FAILED -1 %q", got.GetState(), got.GetExitCode(), got.GetMessage(), want)
	}
	waitFor(t, "service removal", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.services) == 0
	})
}

func TestPendingWaitsAndRunningSettles(t *testing.T) {
	d := newStub()
	var mu sync.Mutex
	state := swarm.TaskStatePending
	polled := make(chan struct{}, 100)
	d.tasks = func(id string) []swarm.Task {
		mu.Lock()
		defer mu.Unlock()
		select { // never block the poller: the test reads only the first polls
		case polled <- struct{}{}:
		default:
		}
		return []swarm.Task{{ServiceID: id, Status: swarm.TaskStatus{State: state, Err: "no suitable node (insufficient resources on 2 nodes)"}}}
	}
	rep := newReports()
	m := newTestManager(t, d, rep)
	runManager(t, m)
	if err := m.CreateService(context.Background(), testAssignment()); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		<-polled
	}
	if !m.watching("cml-sweep-a1b2c3-3-2") {
		t.Fatal("pending service no longer watched")
	}
	mu.Lock()
	state = swarm.TaskStateRunning
	mu.Unlock()
	waitFor(t, "the watch to settle", func() bool { return !m.watching("cml-sweep-a1b2c3-3-2") })
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.got) != 0 || len(d.services) != 1 {
		t.Errorf("reports %v, services %d; want none and the service kept", rep.got, len(d.services))
	}
}

func TestFailureMessages(t *testing.T) {
	d := newStub()
	d.nodes["n1"] = "h1"
	m := newTestManager(t, d, newReports())
	asg := testAssignment()
	for _, tt := range []struct{ err, want string }{
		{"invalid mount config for type \"bind\": bind source path does not exist: /r/x/jobs/j/code", "is not staged on node h1"},
		{"starting container failed: exec: \"nope\": executable file not found", "could not start the task on node h1: starting container failed"},
	} {
		got := m.failureMessage(context.Background(), asg, swarm.Task{NodeID: "n1", Status: swarm.TaskStatus{State: swarm.TaskStateRejected, Err: tt.err}})
		if !strings.Contains(got, tt.want) {
			t.Errorf("message for %q = %q, want it to contain %q", tt.err, got, tt.want)
		}
	}
	if !failedToStart(swarm.Task{Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "starting container failed: x"}}) ||
		failedToStart(swarm.Task{Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "task: non-zero exit (1)"}}) {
		t.Error("failedToStart does not tell a start failure from a failed run")
	}
}
