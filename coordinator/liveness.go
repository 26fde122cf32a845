package coordinator

import (
	"sync"
	"sync/atomic"
	"time"
)

// liveness is when each node was last heard from and what its last
// heartbeat said of its runtime, kept apart from c.mu: a heartbeat takes
// no lock job state uses and writes nothing durable, so it is answered at
// once however busy the scheduler or the store is, and a node's deadline
// counts from when its heartbeat arrived. The node checker reads it
// (nodes.go) and applies what changed under c.mu.
type liveness struct {
	mu    sync.RWMutex // protects nodes (the map, not the beats)
	nodes map[string]*beat
	// changed is signalled when a node's runtime report changes, so the
	// checker applies it without waiting for its tick.
	changed chan struct{}
}

// beat is one node's liveness.
type beat struct {
	seen       atomic.Int64           // unix nanoseconds of the last heartbeat or session open
	runtimeErr atomic.Pointer[string] // the last heartbeat's runtime error, "" when it works
}

func newLiveness() *liveness {
	return &liveness{nodes: map[string]*beat{}, changed: make(chan struct{}, 1)}
}

// add starts tracking node as seen at now (kept if already tracked).
func (l *liveness) add(node string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.nodes[node]
	if b == nil {
		b = &beat{}
		l.nodes[node] = b
	}
	b.seen.Store(now.UnixNano())
}

func (l *liveness) get(node string) *beat {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nodes[node]
}

// beat records a heartbeat of node at now with its runtime report; false
// when node is unknown.
func (l *liveness) beat(node string, now time.Time, runtimeErr string) bool {
	b := l.get(node)
	if b == nil {
		return false
	}
	b.saw(now)
	if old := b.runtimeErr.Swap(&runtimeErr); old == nil && runtimeErr != "" || old != nil && *old != runtimeErr {
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
	return true
}

// touch records that node was heard from at now (a session opened).
func (l *liveness) touch(node string, now time.Time) {
	if b := l.get(node); b != nil {
		b.seen.Store(now.UnixNano())
	}
}

// saw moves the last time heard from to at, unless it is later already:
// the pulse process's beats arrive here after a delay, and a session may
// have opened or a beat on the session's connection arrived meanwhile.
func (b *beat) saw(at time.Time) {
	n := at.UnixNano()
	for {
		old := b.seen.Load()
		if old >= n || b.seen.CompareAndSwap(old, n) {
			return
		}
	}
}

// lastSeen is when node was last heard from; zero when unknown.
func (l *liveness) lastSeen(node string) time.Time {
	b := l.get(node)
	if b == nil {
		return time.Time{}
	}
	return time.Unix(0, b.seen.Load())
}

// runtimeError is the runtime error node's last heartbeat reported.
func (l *liveness) runtimeError(node string) string {
	if b := l.get(node); b != nil {
		if p := b.runtimeErr.Load(); p != nil {
			return *p
		}
	}
	return ""
}
