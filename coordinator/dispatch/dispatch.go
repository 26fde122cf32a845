// Package dispatch is the coordinator's dispatcher: it holds each node's
// open AgentService.Session stream and sends the node its commands
// (assignments, cancels, swarm and staging orders) once the change each
// command carries is on disk.
//
// It is one of the coordinator's roles, split off as swarmkit's manager
// splits its dispatcher, scheduler and log broker: it keeps its own state
// (which node has which session, and since when a node has none) under its
// own lock and meets the job store through Send and Fence. A session's
// stream takes no coordinator lock to send, and whether a node is
// connected is read without a lock (Node).
//
// The rule is the coordinator's: commit, then act. The job store hands
// Send its commands with the sequence number of the last commit it queued
// when it made them; a session sends a command only once Fence says that
// commit is durable, so no agent acts on a change the store could lose.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

var (
	// ErrEnded means the coordinator ended the session (a newer one
	// replaced it, the node was marked down or removed, its buffer filled);
	// the error says why. The agent reconnects.
	ErrEnded = errors.New("session ended")
	// ErrStopped means the coordinator is stopping.
	ErrStopped = errors.New("coordinator is shutting down")
)

// DefaultBuffer is how many commands may queue for a slow agent before its
// session is ended (the agent reconnects and gets its assignments again).
const DefaultBuffer = 1024

// Fence says when a commit is durable: the job store's group committer.
type Fence interface {
	// Wait blocks until the commit seq is on disk, or returns why it
	// never will be.
	Wait(seq uint64) error
}

// Config configures a Dispatcher.
type Config struct {
	// Fence is waited on before each command is sent.
	Fence Fence
	// Buffer is how many commands may queue per session; a session whose
	// buffer is full is ended rather than block the caller.
	Buffer int
	// Done is closed when the coordinator stops; sessions then end.
	Done <-chan struct{}
}

// Validate reports what is missing from cfg.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.Fence == nil {
		errs = append(errs, errors.New("dispatch: Fence is required"))
	}
	if cfg.Buffer < 1 {
		errs = append(errs, fmt.Errorf("dispatch: Buffer must be at least 1, not %d", cfg.Buffer))
	}
	if cfg.Done == nil {
		errs = append(errs, errors.New("dispatch: Done is required"))
	}
	return errors.Join(errs...)
}

// Message is a command for a node.
type Message struct {
	Node string
	Msg  *cloudmlv1.SessionResponse
}

// Dispatcher holds the open sessions, at most one per node.
type Dispatcher struct {
	cfg Config

	mu    sync.Mutex // serialises changes to nodes and their sessions
	nodes map[string]*Node
}

// Node is a node's place in the dispatcher, kept for the dispatcher's
// life: its open session and when its last one ended. Its readers take no
// lock, so the scheduler may ask about every node on every pass.
type Node struct {
	sess atomic.Pointer[Session] // nil when none; changed under Dispatcher.mu
	// ended is when the node last had no session from (unix ns): its last
	// session's end, or when Node made it; written before sess is cleared.
	ended atomic.Int64
}

// Connected reports whether the node has an open session.
func (n *Node) Connected() bool { return n.sess.Load() != nil }

// Session is the node's open session, nil when it has none.
func (n *Node) Session() *Session { return n.sess.Load() }

// Detached reports whether the node has no open session, and since when:
// its last session's end, or when Node made it if it never had one.
func (n *Node) Detached() (since time.Time, detached bool) {
	if n.sess.Load() != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n.ended.Load()), true
}

// detach clears s as the node's session if it still is, recording when.
// Callers hold Dispatcher.mu.
func (n *Node) detach(s *Session, now time.Time) {
	if n.sess.Load() == s {
		n.ended.Store(now.UnixNano()) // first: a reader seeing no session sees this end
		n.sess.Store(nil)
	}
}

// endSession ends the node's session, if it has one, telling it why.
// Callers hold Dispatcher.mu.
func (n *Node) endSession(reason string, now time.Time) {
	if s := n.sess.Load(); s != nil {
		s.end(reason)
		n.detach(s, now)
	}
}

// New returns a Dispatcher with no sessions.
func New(cfg Config) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Dispatcher{cfg: cfg, nodes: map[string]*Node{}}, nil
}

// Node is the node's place in the dispatcher, made on first use as
// without a session since since (when its keeper learned of it).
func (d *Dispatcher) Node(id string, since time.Time) *Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.node(id, since)
}

// node is Node under d.mu.
func (d *Dispatcher) node(id string, since time.Time) *Node {
	n := d.nodes[id]
	if n == nil {
		n = &Node{}
		n.ended.Store(since.UnixNano())
		d.nodes[id] = n
	}
	return n
}

// Open starts the node's new session, ending the one it had.
func (d *Dispatcher) Open(node string) *Session {
	s := &Session{
		node:  node,
		fence: d.cfg.Fence,
		stop:  d.cfg.Done,
		ch:    make(chan stamped, d.cfg.Buffer),
		done:  make(chan struct{}),
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.node(node, time.Now()).sess.Swap(s); old != nil {
		old.end("replaced by a newer session")
	}
	return s
}

// Close ends s once its stream is over; if s is still its node's session,
// the node has none from now (Close reads the clock itself: a deferred
// call's arguments are taken when it is deferred).
func (d *Dispatcher) Close(s *Session) {
	s.end("session closed")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[s.node].detach(s, time.Now()) // Open made it
}

// End ends the node's session, if it has one, telling it why.
func (d *Dispatcher) End(node, reason string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.nodes[node]; n != nil {
		n.endSession(reason, now)
	}
}

// EndAll ends every session, telling each why.
func (d *Dispatcher) EndAll(reason string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.nodes {
		n.endSession(reason, now)
	}
}

// Send queues msgs, in order, for their nodes' sessions; each is sent once
// the commit seq is durable. A command for a node without a session is
// dropped: the node gets what it still needs when it opens its next one.
// Send never blocks: a session whose buffer is full is ended, and its node
// has no session from then (nothing more is placed on it), though its
// stream may still be stuck sending to the slow agent.
func (d *Dispatcher) Send(seq uint64, msgs []Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range msgs {
		n := d.nodes[m.Node]
		if n == nil {
			continue
		}
		if s := n.sess.Load(); s != nil && !s.queue(stamped{seq: seq, msg: m.Msg}) {
			n.detach(s, time.Now())
		}
	}
}

// stamped is a command and the commit it waits for.
type stamped struct {
	seq uint64
	msg *cloudmlv1.SessionResponse
}

// Session is one node's open stream of commands.
type Session struct {
	node  string
	fence Fence
	stop  <-chan struct{}
	ch    chan stamped
	done  chan struct{} // closed to end the stream
	once  sync.Once
	// reason is why done was closed; written before close.
	reason string
}

// Node is the node the session belongs to.
func (s *Session) Node() string { return s.node }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// queue adds m; a full buffer ends the session instead of blocking, and
// queue reports false.
func (s *Session) queue(m stamped) bool {
	select {
	case s.ch <- m:
		return true
	default:
		s.end("session buffer full; reconnect to receive assignments again")
		return false
	}
}

// end ends the session once, recording why.
func (s *Session) end(reason string) {
	s.once.Do(func() {
		s.reason = reason
		close(s.done)
	})
}

// Serve sends the session's commands with send, each once its commit is
// durable, until ctx ends (nil: the agent went away), the session is ended
// (ErrEnded, with the reason), the coordinator stops (ErrStopped), a
// commit fails (the Fence's error: the commands were not saved) or send
// fails (its error). Commands queued together wait once, for the latest
// commit among them, then go out together.
func (s *Session) Serve(ctx context.Context, send func(*cloudmlv1.SessionResponse) error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return fmt.Errorf("%w: %s", ErrEnded, s.reason)
		case <-s.stop:
			return ErrStopped
		case m := <-s.ch:
			batch, last := drain(s.ch, m)
			if err := s.fence.Wait(last); err != nil {
				return err
			}
			for _, m := range batch {
				if err := send(m.msg); err != nil {
					return err
				}
			}
		}
	}
}

// drain returns first and every command queued behind it, and the last
// commit they wait for.
func drain(ch <-chan stamped, first stamped) (batch []stamped, last uint64) {
	batch, last = []stamped{first}, first.seq
	for {
		select {
		case m := <-ch:
			batch = append(batch, m)
			last = max(last, m.seq)
		default:
			return batch, last
		}
	}
}
