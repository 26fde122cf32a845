package coordinator

import (
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/store"
)

// The rule: commit, then act. A change is made in memory under c.mu and
// queued for the store there (committer.enqueue, in the queue's order);
// nothing of it is shown to anyone until the commit that holds it is on
// disk: an RPC's answer waits for it (Coordinator.locked), and so do the
// commands sent to agents (send; dispatch.Session.Serve). Many RPCs' changes share one
// transaction and one fsync, written outside c.mu, so no lock is held
// across a sync and each caller waits for the commit that holds its
// change, not for each other's.
//
// Every transition is durable before it is acknowledged, progress
// (STAGING, RUNNING) as much as an attempt's assignment and end: with
// group commits a progress report costs its agent one wait for the next
// commit, and no path needs to know which of its changes may be lost.
//
// When a commit fails, every change queued from then on fails with it and
// the coordinator recovers (recover.go): it waits for the store to work
// again, then reloads memory from it, so memory is never ahead of what was
// acknowledged.

// committer writes queued batches in group commits. Sequence numbers
// name batches in the order they were queued.
//
// A caller waiting for its seq sleeps on the flight that will write it
// (the one being written, or the next), so each commit wakes only the
// callers whose changes it holds. With one condition variable for all,
// each enqueue and each commit woke every waiting RPC (hundreds at 1,000
// nodes) to find its seq not yet durable.
type committer struct {
	st  *store.Store
	log hclog.Logger
	// failed is called, from the committer's goroutine, when a commit
	// fails; the coordinator starts its recovery.
	failed func(error)

	mu sync.Mutex
	// cond wakes run: something queued, a failure over, or close.
	cond *sync.Cond
	// queued is the flight the queued batches go out in; writing is the
	// one being written (nil between commits), holding seqs up to
	// writingLast.
	queued, writing *flight
	writingLast     uint64
	queue           []*store.Batch
	first           uint64 // seq of queue[0]
	next            uint64 // the next seq to hand out
	durable         uint64 // every seq up to it is on disk (or lost)
	lost            []seqRange
	err             error // why commits fail, until resume
	closed          bool
	done            chan struct{}
}

// seqRange is the seqs from, to (inclusive) that a failed commit lost.
type seqRange struct{ from, to uint64 }

// flight is one group commit's batches as their callers see them: done
// closes when the commit ended (or the callers must stop waiting for it).
type flight struct {
	done  chan struct{}
	ended bool // done is closed (committer.mu)
}

func newFlight() *flight { return &flight{done: make(chan struct{})} }

// end wakes the flight's waiters, once. Callers hold committer.mu.
func (f *flight) end() {
	if f != nil && !f.ended {
		f.ended = true
		close(f.done)
	}
}

// wakeQueued wakes the callers of the queued batches, which will not be
// written now (a failure, close), and starts a new flight for the queue.
// Callers hold q.mu.
func (q *committer) wakeQueued() {
	q.queued.end()
	q.queued = newFlight()
}

func newCommitter(st *store.Store, log hclog.Logger, failed func(error)) *committer {
	q := &committer{st: st, log: log, failed: failed, first: 1, next: 1, done: make(chan struct{}), queued: newFlight()}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// enqueue queues b and returns its seq; 0 for an empty batch.
func (q *committer) enqueue(b *store.Batch) uint64 {
	if b == nil || b.Len() == 0 {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	seq := q.next
	q.next++
	q.queue = append(q.queue, b)
	q.cond.Signal() // run alone waits on cond
	return seq
}

// last is the seq of the last batch queued.
func (q *committer) last() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.next - 1
}

// Wait blocks until seq is on disk, or returns why it never will be.
func (q *committer) Wait(seq uint64) error {
	if seq == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.durable < seq && q.err == nil && !q.closed {
		f := q.queued
		if q.writing != nil && seq <= q.writingLast {
			f = q.writing
		}
		q.mu.Unlock()
		<-f.done
		q.mu.Lock()
	}
	if err := q.lostErr(seq); err != nil {
		return err
	}
	if q.durable < seq {
		if q.err != nil {
			return q.err
		}
		return ErrShuttingDown
	}
	return nil
}

// lostErr says why seq was lost, nil when it was not. Callers hold q.mu.
func (q *committer) lostErr(seq uint64) error {
	for _, r := range q.lost {
		if seq >= r.from && seq <= r.to {
			return errorf(ErrStoreUnavailable, "the change was not saved: the store failed; retry")
		}
	}
	return nil
}

// run writes whatever is queued, one transaction at a time, until close.
func (q *committer) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for (len(q.queue) == 0 || q.err != nil) && !q.closed {
			q.cond.Wait()
		}
		if q.closed && (len(q.queue) == 0 || q.err != nil) {
			q.mu.Unlock()
			return
		}
		batches, first := q.queue, q.first
		q.queue, q.first = nil, q.first+uint64(len(batches))
		q.writing, q.writingLast = q.queued, q.first-1
		q.queued = newFlight()
		q.mu.Unlock()

		err := q.st.Write(batches...)

		q.mu.Lock()
		last := first + uint64(len(batches)) - 1
		if err != nil {
			q.err = errorf(ErrStoreUnavailable, "the store failed (%v); the coordinator is reloading its state and will serve again once the store works; retry", err)
			q.log.Error("commit failed; changes from here on are refused until the store works again", "error", err, "batches", len(batches))
		}
		q.durable = last
		if err != nil {
			// This commit and everything queued after it until resume.
			q.lost = append(q.lost, seqRange{first, last})
			q.wakeQueued() // they see q.err
		}
		q.writing.end()
		q.writing = nil
		q.mu.Unlock()
		if err != nil {
			q.failed(err)
		}
	}
}

// resume ends a failure once memory was reloaded from the store: what was
// queued meanwhile is lost (the reload dropped it from memory too), and
// commits go on from the next seq.
func (q *committer) resume() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		return
	}
	if n := len(q.queue); n > 0 {
		q.lost = append(q.lost, seqRange{q.first, q.first + uint64(n) - 1})
		q.queue = nil
	}
	// A seq that holds nothing: fences taken from here on (last) wait for
	// it, not for one the failure lost.
	q.next++
	q.first = q.next
	q.durable = q.next - 1
	q.err = nil
	q.wakeQueued() // none should wait: the failure woke them
	q.cond.Broadcast()
}

// failure is why commits fail now, nil while they work.
func (q *committer) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// close writes what is queued (unless commits are failing) and stops.
func (q *committer) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.writing.end() // waiters give up (ErrShuttingDown) as before
	q.wakeQueued()
	q.mu.Unlock()
	<-q.done
}
