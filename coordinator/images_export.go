package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// imageExports tracks the exports asked of nodes: at most one per image
// name (fetches of one name share it) and one at a time per node, so that
// an UploadImage error, which names no image, answers exactly one request.
type imageExports struct {
	mu     sync.Mutex               // protects byName, busy
	byName map[string]*export       // running exports
	busy   map[string]chan struct{} // node id -> closed when its export ends
}

func newImageExports() *imageExports {
	return &imageExports{byName: map[string]*export{}, busy: map[string]chan struct{}{}}
}

// export is the search for one image among the nodes.
type export struct {
	name       string
	requesters map[string]bool // nodes that fetch it: never asked; protected by imageExports.mu
	cur        *exportAttempt  // the node asked now; protected by imageExports.mu
	done       chan struct{}   // closed when the search ends
	err        error           // why it failed; written before done closes
}

// exportAttempt is one node's answer to ExportImage.
type exportAttempt struct {
	node     string
	claimed  bool          // an upload took it; protected by imageExports.mu
	started  chan struct{} // closed when the upload's header arrived
	received atomic.Int64  // archive bytes so far
	once     sync.Once
	done     chan struct{} // closed when the upload ended
	err      error         // written before done closes
}

func (a *exportAttempt) begin() { close(a.started) }

// finish ends the attempt once with err (nil: the image is stored).
func (a *exportAttempt) finish(err error) {
	a.once.Do(func() {
		a.err = err
		close(a.done)
	})
}

// pending returns the attempt node may answer and claims it: the export of
// name asked of it, or for name "" (an error reply) whatever it was asked.
func (x *imageExports) pending(node, name string) *exportAttempt {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range x.byName {
		if a := e.cur; a != nil && a.node == node && !a.claimed && (name == "" || name == e.name) {
			a.claimed = true
			return a
		}
	}
	return nil
}

// exportImage waits until name is stored, asking the nodes for it unless
// another fetch already does.
func (c *Coordinator) exportImage(ctx context.Context, name, requester string) error {
	x := c.exports
	x.mu.Lock()
	e := x.byName[name]
	if e == nil {
		e = &export{name: name, requesters: map[string]bool{}, done: make(chan struct{})}
		x.byName[name] = e
		go c.runExport(e)
	}
	e.requesters[requester] = true
	x.mu.Unlock()
	select {
	case <-e.done:
		return e.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runExport asks the candidate nodes in turn until one uploads the image.
func (c *Coordinator) runExport(e *export) {
	log := c.log.With("image", e.name)
	start := time.Now()
	var tried []string
	defer func() {
		c.exports.mu.Lock()
		delete(c.exports.byName, e.name)
		c.exports.mu.Unlock()
		close(e.done)
	}()
	for _, node := range c.exportCandidates() {
		c.exports.mu.Lock()
		skip := e.requesters[node]
		c.exports.mu.Unlock()
		if skip {
			continue
		}
		err := c.exportFrom(e, node)
		if err == nil {
			log.Info("image exported by a node", "node_id", node, "elapsed", time.Since(start).Round(time.Millisecond))
			return
		}
		if errors.Is(err, ErrShuttingDown) {
			e.err = err
			return
		}
		log.Info("node did not provide the image", "node_id", node, "error", err)
		tried = append(tried, node+": "+err.Error())
	}
	asked := "no other node runs Docker in the swarm"
	if len(tried) > 0 {
		asked = "asked " + strings.Join(tried, "; ")
	}
	e.err = errorf(ErrNotFound, "image %s: no client pushed it and no node has it (%s); "+
		"submit from a machine whose Docker has it (the client pushes it), or use a registry the nodes can pull from", e.name, asked)
	log.Warn("image not found on any node", "tried", len(tried))
}

// exportCandidates are the connected, ready Docker nodes in the swarm,
// the manager first.
func (c *Coordinator) exportCandidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first, rest []string
	for _, n := range c.byID {
		if !n.session.Connected() || n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY || n.rec.SwarmNodeID == "" || n.rec.Runtime != runtimeDocker {
			continue
		}
		if n.rec.ID == c.swarm.manager {
			first = append(first, n.rec.ID)
		} else {
			rest = append(rest, n.rec.ID)
		}
	}
	return append(first, rest...)
}

// exportFrom asks one node for the image and waits for its upload: up to
// ImageExportStart for it to begin, then as long as bytes keep arriving.
func (c *Coordinator) exportFrom(e *export, node string) error {
	release, err := c.exports.acquire(c.done, node)
	if err != nil {
		return err
	}
	defer release()
	a := &exportAttempt{node: node, started: make(chan struct{}), done: make(chan struct{})}
	c.exports.mu.Lock()
	e.cur = a
	c.exports.mu.Unlock()
	defer func() {
		c.exports.mu.Lock()
		e.cur = nil
		c.exports.mu.Unlock()
	}()
	c.mu.Lock()
	var sess *dispatch.Session
	if n := c.nodes[node]; n != nil {
		sess = n.session.Session()
	}
	if sess == nil {
		c.mu.Unlock()
		return errors.New("not connected")
	}
	c.send(node, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_ExportImage{ExportImage: &cloudmlv1.ExportImage{Image: e.name}}})
	c.mu.Unlock()
	c.log.Info("asking node for image", "node_id", node, "image", e.name)

	startBy := time.NewTimer(c.cfg.ImageExportStart)
	defer startBy.Stop()
	select {
	case <-a.started:
	case <-a.done:
		return a.err
	case <-startBy.C:
		return fmt.Errorf("no upload began within %s", c.cfg.ImageExportStart)
	case <-sess.Done():
		return errors.New("its session ended before the upload began")
	case <-c.done:
		return ErrShuttingDown
	}
	idle := c.cfg.ImageExportIdle
	tick := time.NewTicker(max(idle/4, time.Millisecond))
	defer tick.Stop()
	last, lastChange := a.received.Load(), time.Now()
	for {
		select {
		case <-a.done:
			return a.err
		case <-c.done:
			return ErrShuttingDown
		case now := <-tick.C:
			if got := a.received.Load(); got != last {
				last, lastChange = got, now
			} else if now.Sub(lastChange) >= idle {
				return fmt.Errorf("the upload stalled at %d bytes for %s", got, idle)
			}
		}
	}
}

// acquire waits until no other export is asked of node, then marks it
// busy until release.
func (x *imageExports) acquire(stop <-chan struct{}, node string) (release func(), err error) {
	for {
		x.mu.Lock()
		wait, busy := x.busy[node]
		if !busy {
			done := make(chan struct{})
			x.busy[node] = done
			x.mu.Unlock()
			return func() {
				x.mu.Lock()
				delete(x.busy, node)
				x.mu.Unlock()
				close(done)
			}, nil
		}
		x.mu.Unlock()
		select {
		case <-wait:
		case <-stop:
			return nil, ErrShuttingDown
		}
	}
}
