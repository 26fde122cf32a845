package coordinator

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/store"
)

// TestCommitterWaitersSeeTheirOwnCommits has many callers queue a change
// and wait for it at once, as RPCs do: each returns once its change is on
// disk (the store holds it), whichever group commit took it.
func TestCommitterWaitersSeeTheirOwnCommits(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q := newCommitter(st, hclog.NewNullLogger(), func(err error) { t.Errorf("commit failed: %v", err) })
	const callers, each = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				b, err := store.Encode(&store.Changes{Nodes: []*store.Node{{ID: fmt.Sprintf("node-%d-%d", c, i)}}})
				if err != nil {
					errs <- err
					return
				}
				seq := q.enqueue(b)
				if err := q.Wait(seq); err != nil {
					errs <- fmt.Errorf("seq %d: %w", seq, err)
					return
				}
				if d := q.durableSeq(); d < seq {
					errs <- fmt.Errorf("seq %d returned with only %d durable", seq, d)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	q.close()
	snap, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Nodes) != callers*each {
		t.Fatalf("%d nodes on disk, want %d", len(snap.Nodes), callers*each)
	}
	// After close, a change that was never written is not acknowledged.
	b, _ := store.Encode(&store.Changes{Nodes: []*store.Node{{ID: "late"}}})
	if err := q.Wait(q.enqueue(b)); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("wait after close: %v, want ErrShuttingDown", err)
	}
}

// durableSeq is the highest seq known on disk.
func (q *committer) durableSeq() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.durable
}

// TestChangesEmpty: a change is empty only when it holds no record of any
// kind; one node and one job, as many of one kind as of another, still
// make a commit.
func TestChangesEmpty(t *testing.T) {
	ch := newChanges()
	if !ch.empty() {
		t.Fatal("a new change is not empty")
	}
	ch.nodes["node-1"] = &store.Node{ID: "node-1"}
	ch.jobs["job-1"] = &store.Job{ID: "job-1"}
	if ch.empty() {
		t.Error("a change of one node and one job is empty")
	}
}
