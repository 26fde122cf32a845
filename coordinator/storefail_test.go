package coordinator

import (
	"sync/atomic"
	"testing"

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
