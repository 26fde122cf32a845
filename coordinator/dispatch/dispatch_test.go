package dispatch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fence is a commit log the test makes durable by hand.
type fence struct {
	mu      sync.Mutex
	durable uint64
	err     error
	changed chan struct{} // closed and replaced on each change
	waits   []uint64
}

func newFence() *fence { return &fence{changed: make(chan struct{})} }

func (f *fence) Wait(seq uint64) error {
	f.mu.Lock()
	f.waits = append(f.waits, seq)
	for f.durable < seq && f.err == nil {
		ch := f.changed
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if f.durable >= seq {
		return nil
	}
	return f.err
}

func (f *fence) set(durable uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.durable, f.err = durable, err
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fence) waited() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.waits...)
}

func newDispatcher(t *testing.T, f *fence, buffer int) (*Dispatcher, chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	d, err := New(Config{Fence: f, Buffer: buffer, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	return d, done
}

func msg(node string) *cloudmlv1.SessionResponse {
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: &cloudmlv1.SessionStarted{NodeId: node}}}
}

// served runs s.Serve, collecting what it sends; Serve's result arrives
// on the returned error channel.
func served(t *testing.T, ctx context.Context, s *Session) (<-chan string, <-chan error) {
	t.Helper()
	got, end := make(chan string, 16), make(chan error, 1)
	go func() {
		end <- s.Serve(ctx, func(m *cloudmlv1.SessionResponse) error {
			got <- m.GetStarted().GetNodeId()
			return nil
		})
	}()
	return got, end
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

// A command goes out only once the commit it waits for is durable, and
// commands queued together wait once, for the latest of their commits.
func TestCommandsWaitForTheirCommit(t *testing.T) {
	f := newFence()
	d, _ := newDispatcher(t, f, 8)
	s := d.Open("node-1")
	d.Send(3, []Message{{"node-1", msg("a")}})
	d.Send(7, []Message{{"node-1", msg("b")}, {"node-2", msg("nobody")}})
	got, _ := served(t, t.Context(), s)

	f.set(6, nil)
	select {
	case m := <-got:
		t.Fatalf("sent %q before commit 7 was durable", m)
	case <-time.After(50 * time.Millisecond):
	}
	f.set(7, nil)
	if a, b := recv(t, got, "first command"), recv(t, got, "second command"); a != "a" || b != "b" {
		t.Fatalf("sent %q then %q, want a then b", a, b)
	}
	if w := f.waited(); len(w) != 1 || w[0] != 7 {
		t.Errorf("waited for commits %v, want once for 7", w)
	}
}

// A commit that fails ends the session with the store's error, and what
// it carried is not sent.
func TestFailedCommitEndsTheSession(t *testing.T) {
	f := newFence()
	d, _ := newDispatcher(t, f, 8)
	s := d.Open("node-1")
	d.Send(1, []Message{{"node-1", msg("a")}})
	got, end := served(t, t.Context(), s)
	failed := errors.New("store failed")
	f.set(0, failed)
	if err := recv(t, end, "end of Serve"); !errors.Is(err, failed) {
		t.Fatalf("Serve ended with %v, want the store's error", err)
	}
	if len(got) != 0 {
		t.Errorf("sent %q though its commit failed", <-got)
	}
}

// A node has one session: a newer one ends the older, which, closed
// late, no longer takes the node's place.
func TestNewerSessionReplacesOlder(t *testing.T) {
	f := newFence()
	f.set(100, nil)
	d, _ := newDispatcher(t, f, 8)
	old := d.Open("node-1")
	_, oldEnd := served(t, t.Context(), old)
	cur := d.Open("node-1")
	if d.Node("node-1", time.Time{}).Session() != cur || cur.Node() != "node-1" {
		t.Fatal("the newer session is not the node's")
	}
	err := recv(t, oldEnd, "end of the older session")
	if !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "replaced by a newer session") {
		t.Fatalf("older session ended with %v", err)
	}
	d.Close(old)
	if !d.Node("node-1", time.Time{}).Connected() {
		t.Fatal("closing the older session disconnected the node")
	}
	got, _ := served(t, t.Context(), cur)
	d.Send(1, []Message{{"node-1", msg("a")}})
	if m := recv(t, got, "command"); m != "a" {
		t.Fatalf("sent %q", m)
	}

	before := time.Now()
	d.Close(cur)
	if since, detached := d.Node("node-1", time.Time{}).Detached(); !detached || since.Before(before) || since.After(time.Now()) {
		t.Errorf("Detached after close = %v, %v; want the time of the close (after %v), true", since, detached, before)
	}
	known := time.Unix(500, 0)
	if since, detached := d.Node("node-2", known).Detached(); !detached || !since.Equal(known) {
		t.Errorf("a node that never opened a session: Detached = %v, %v; want %v, true (when Node made it)", since, detached, known)
	}
	if since, _ := d.Node("node-2", time.Unix(900, 0)).Detached(); !since.Equal(known) {
		t.Errorf("Node of a node it has made again: detached since %v, want %v", since, known)
	}
}

// End and EndAll end sessions with their reason and record when.
func TestEndTellsWhy(t *testing.T) {
	f := newFence()
	d, _ := newDispatcher(t, f, 8)
	one, two := d.Open("node-1"), d.Open("node-2")
	_, oneEnd := served(t, t.Context(), one)
	_, twoEnd := served(t, t.Context(), two)
	if _, detached := d.Node("node-1", time.Time{}).Detached(); detached {
		t.Fatal("a node with a session is detached")
	}
	at := time.Unix(2000, 0)
	d.End("node-1", "node marked down", at)
	d.End("node-3", "no such session", at) // nothing to end
	if err := recv(t, oneEnd, "end of node-1's session"); !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "node marked down") {
		t.Fatalf("node-1's session ended with %v", err)
	}
	if since, detached := d.Node("node-1", time.Time{}).Detached(); !detached || !since.Equal(at) {
		t.Errorf("Detached = %v, %v; want %v, true", since, detached, at)
	}
	if !d.Node("node-2", time.Time{}).Connected() {
		t.Fatal("ending node-1 ended node-2")
	}
	later := at.Add(time.Minute)
	d.EndAll("store failed", later)
	if err := recv(t, twoEnd, "end of node-2's session"); !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "store failed") {
		t.Fatalf("node-2's session ended with %v", err)
	}
	if d.Node("node-2", time.Time{}).Connected() {
		t.Error("EndAll left node-2 connected")
	}
	if since, _ := d.Node("node-2", time.Time{}).Detached(); !since.Equal(later) {
		t.Errorf("node-2 detached since %v, want %v", since, later)
	}
}

// A slow agent's full buffer ends its session instead of blocking Send,
// and its node has no session from then.
func TestFullBufferEndsTheSession(t *testing.T) {
	f := newFence()
	f.set(10, nil)
	d, _ := newDispatcher(t, f, 2)
	s := d.Open("node-1")
	d.Send(1, []Message{{"node-1", msg("a")}, {"node-1", msg("b")}})
	select {
	case <-s.Done():
		t.Fatal("a buffer that holds its commands ended the session")
	default:
	}
	d.Send(1, []Message{{"node-1", msg("c")}})
	select {
	case <-s.Done():
	default:
		t.Fatal("a full buffer did not end the session")
	}
	if d.Node("node-1", time.Time{}).Connected() {
		t.Error("the node of a session whose buffer filled still counts as connected")
	}
	err := s.Serve(t.Context(), func(*cloudmlv1.SessionResponse) error { return nil })
	if !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "buffer full") {
		t.Fatalf("Serve ended with %v", err)
	}
}

// Serve ends when the agent goes away (nil), when the coordinator stops,
// and when a send fails.
func TestServeEnds(t *testing.T) {
	f := newFence()
	f.set(10, nil)
	d, done := newDispatcher(t, f, 8)

	ctx, cancel := context.WithCancel(t.Context())
	_, end := served(t, ctx, d.Open("node-1"))
	cancel()
	if err := recv(t, end, "end after the agent left"); err != nil {
		t.Errorf("Serve after the agent left = %v, want nil", err)
	}

	broken := errors.New("stream broken")
	s := d.Open("node-2")
	d.Send(1, []Message{{"node-2", msg("a")}})
	if err := s.Serve(t.Context(), func(*cloudmlv1.SessionResponse) error { return broken }); !errors.Is(err, broken) {
		t.Errorf("Serve with a failing send = %v", err)
	}

	_, end = served(t, t.Context(), d.Open("node-3"))
	close(done)
	if err := recv(t, end, "end on stop"); !errors.Is(err, ErrStopped) {
		t.Errorf("Serve on stop = %v, want ErrStopped", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil ||
		!strings.Contains(err.Error(), "Fence") || !strings.Contains(err.Error(), "Buffer") || !strings.Contains(err.Error(), "Done") {
		t.Fatalf("New(Config{}) = %v, want each missing field named", err)
	}
	if err := (Config{Fence: newFence(), Buffer: 1, Done: make(chan struct{})}).Validate(); err != nil {
		t.Fatalf("a whole config: %v", err)
	}
}
