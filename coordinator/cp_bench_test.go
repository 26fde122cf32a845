package coordinator

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// BenchmarkSweepCore drives the coordinator's own work for a sweep of
// b.N tasks on 1,000 nodes of 4 slots, without the network: place, report
// running, report succeeded, with the store's group commits. It measures
// what the control plane costs per task, apart from gRPC.
func BenchmarkSweepCore(b *testing.B) {
	defer withoutChecks()()
	c, placed := benchCoordinator(b)
	spec := gridSpec("bench", b.N)
	job, err := c.submit(spec, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	done := 0
	for done < b.N {
		c.schedule(time.Now())
		// Every attempt assigned now was placed by this pass (the last
		// ones ended below); their sessions send each once it is durable.
		c.mu.Lock()
		want := c.jobs[job.GetId()].inState(cloudmlv1.TaskState_TASK_STATE_ASSIGNED)
		c.mu.Unlock()
		refs := make([]attemptRef, 0, want)
		for range want {
			refs = append(refs, <-placed)
		}
		if len(refs) == 0 {
			b.Fatalf("nothing placed with %d of %d done", done, b.N)
		}
		// Agents report at once, as a thousand would.
		errs := make(chan error, len(refs))
		var wg sync.WaitGroup
		for _, r := range refs {
			wg.Go(func() {
				node := c.attemptNode(r)
				for _, st := range []cloudmlv1.TaskState{cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED} {
					if err := c.reportTask(node, &cloudmlv1.ReportTaskRequest{Ref: r.proto(), State: st}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		done += len(refs)
	}
	b.StopTimer()
	if st := c.jobState(job.GetId()); st != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		b.Fatalf("job %v", st)
	}
}

func (c *Coordinator) attemptNode(r attemptRef) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[r.job].attempt(r.task, r.attempt).NodeID
}

func (c *Coordinator) jobState(id string) cloudmlv1.JobState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[id].rec.State
}

// BenchmarkSchedulePass times one scheduling pass on 1,000 busy nodes of
// 4 slots with a 10,000-task sweep running, beside ended jobs the
// coordinator still keeps (until someone deletes them) and sweeps queued
// behind it: a pass should cost the same however many of either there are.
func BenchmarkSchedulePass(b *testing.B) {
	defer withoutChecks()()
	for _, kept := range []struct{ ended, queued int }{{0, 0}, {5000, 0}, {0, 100}} {
		ended, queued := kept.ended, kept.queued
		b.Run(fmt.Sprintf("ended=%d/queued=%dx1000", ended, queued), func(b *testing.B) {
			c, _ := benchCoordinator(b)
			now := time.Now()
			c.mu.Lock()
			for i := range ended {
				id := fmt.Sprintf("old-%05d", i)
				c.putJob(&jobEntry{
					rec:      &store.Job{ID: id, State: cloudmlv1.JobState_JOB_STATE_SUCCEEDED, TaskCount: 1, CreateTime: now.Add(time.Duration(i-ended) * time.Second)},
					spec:     &cloudmlv1.JobSpec{},
					tasks:    []*store.Task{{JobID: id, State: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED}},
					attempts: make([][]*store.Attempt, 1),
				})
			}
			c.mu.Unlock()
			if _, err := c.submit(gridSpec("busy", 10000), "bench"); err != nil {
				b.Fatal(err)
			}
			c.schedule(time.Now()) // fills every slot
			for i := range queued {
				if _, err := c.submit(gridSpec(fmt.Sprintf("queued-%d", i), 1000), "bench"); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				c.schedule(time.Now())
			}
		})
	}
}

// benchCoordinator is a coordinator with 1,000 connected READY nodes of
// 4 slots, closed at the end of b. Their sessions send the refs of the
// assignments they get to placed (up to its buffer of 16,384; beyond it
// they are dropped).
func benchCoordinator(b *testing.B) (*Coordinator, <-chan attemptRef) {
	const nodes, slots = 1000, 4
	cfg := DefaultConfig()
	cfg.StateDir = b.TempDir()
	cfg.DefaultBucket = "file:///tmp/cloudml-bench-bucket"
	cfg.Version = "bench"
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	placed := make(chan attemptRef, 1<<14)
	send := func(m *cloudmlv1.SessionResponse) error {
		if as := m.GetAssignment(); as != nil {
			select {
			case placed <- refFromProto(as.GetRef()):
			default:
			}
		}
		return nil
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i <= nodes; i++ {
		id := fmt.Sprintf("node-%d", i)
		c.addNode(&nodeEntry{rec: &store.Node{ID: id, Slots: slots, State: cloudmlv1.NodeState_NODE_STATE_READY}}, now)
		c.live.add(id, now)
		sess := c.disp.Open(id)
		go sess.Serve(b.Context(), send) //nolint:errcheck // ends with b or c
	}
	return c, placed
}

// withoutChecks turns off the tests' checks of what is kept (checkKept),
// which would dominate what a benchmark times, until the returned
// function is called.
func withoutChecks() func() {
	was := checkKept
	checkKept = false
	return func() { checkKept = was }
}
