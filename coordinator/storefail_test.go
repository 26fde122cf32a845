package coordinator

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestStoreFailureLosesNothingAcknowledged fails the store's writes and
// syncs on demand: a change the store refused is refused to its caller
// (UNAVAILABLE) and not shown to anyone, what was acknowledged before is
// kept, and once the store works the coordinator serves again, with no
// restart, and what it then acknowledges is on disk.
func TestStoreFailureLosesNothingAcknowledged(t *testing.T) {
	for _, point := range []string{store.FaultWrite, store.FaultSync} {
		t.Run(point, func(t *testing.T) {
			var failing atomic.Bool
			h := start(t, "", func(c *Config) {
				c.storeFault = func(p string) error {
					if failing.Load() && p == point {
						return store.ErrInjected
					}
					return nil
				}
			})
			n := newAgent(t, h, 2)
			n.open()
			job := h.submit(gridSpec("fail", 2))
			a0, a1 := n.next(), n.next()
			if a0.GetRef().GetTaskIndex() != 0 {
				a0, a1 = a1, a0
			}
			for _, a := range []*cloudmlv1.Assignment{a0, a1} {
				if err := n.report(a.GetRef(), running, 0, 0, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := n.report(a1.GetRef(), succeeded, 0, 0, nil); err != nil {
				t.Fatal(err)
			}

			failing.Store(true)
			for try := 1; try <= 2; try++ { // a retry is refused too: no ack of what the disk lacks
				err := n.report(a0.GetRef(), succeeded, 0, 0, nil)
				wantCode(t, err, codes.Unavailable)
			}
			_, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job.GetId()})
			wantCode(t, err, codes.Unavailable)

			failing.Store(false)
			var got *cloudmlv1.Job
			waitFor(t, "the coordinator serving again", func() bool {
				resp, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job.GetId()})
				got = resp.GetJob()
				return err == nil
			})
			if st := got.GetTasks()[1].GetState(); st != succeeded {
				t.Errorf("task 1, acknowledged as succeeded before the failure, is %v", st)
			}
			if st := got.GetTasks()[0].GetState(); st != running {
				t.Errorf("task 0, whose end the store refused, is %v; want running (memory never ahead of disk)", st)
			}

			// The reload ended the session; the agent reconnects with what
			// it runs and reports the end again.
			select {
			case <-n.ended:
			case <-ctxT(t).Done():
				t.Fatal("the session outlived the reload")
			}
			n.open(a0.GetRef())
			if err := n.report(a0.GetRef(), succeeded, 0, 0, nil); err != nil {
				t.Fatalf("the end reported again once the store works: %v", err)
			}
			h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)

			// What was acknowledged is on disk.
			h.stop()
			st, err := store.Open(h.stateDir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			snap, err := st.Load()
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range snap.Tasks {
				if task.State != succeeded {
					t.Errorf("stored task %d is %v, want succeeded", task.Index, task.State)
				}
			}
		})
	}
}

// TestAssignmentsWaitForTheirCommit holds the store's sync: the scheduler
// places the task in memory, but its agent is sent the assignment only
// once the commit that holds it (and the job's) is on disk.
func TestAssignmentsWaitForTheirCommit(t *testing.T) {
	var hold atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	h := start(t, "", func(c *Config) {
		c.storeFault = func(p string) error {
			if hold.Load() && p == store.FaultSync {
				<-release
			}
			return nil
		}
	})
	t.Cleanup(free) // registered after start's: runs before its stop
	n := newAgent(t, h, 1)
	n.open()
	hold.Store(true)
	submitted := make(chan error, 1)
	go func() {
		_, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: gridSpec("held", 1)})
		submitted <- err
	}()
	waitFor(t, "the task placed in memory", func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		for _, j := range h.c.jobs {
			if j.inState(cloudmlv1.TaskState_TASK_STATE_ASSIGNED) == 1 {
				return true
			}
		}
		return false
	})
	select {
	case as := <-n.assignments:
		t.Fatalf("assignment %v sent before its commit was on disk", as.GetRef())
	case err := <-submitted:
		t.Fatalf("SubmitJob answered (%v) before its commit was on disk", err)
	case <-time.After(200 * time.Millisecond):
	}
	free()
	if as := n.next(); as.GetRef().GetTaskIndex() != 0 {
		t.Fatalf("assignment %v", as.GetRef())
	}
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
}
