package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// ErrDuplicate means an agent for that node id runs already.
var ErrDuplicate = errors.New("an agent runs for this node already")

// Agent is one node's agent process, for Agents.Start.
type Agent struct {
	// Node is the node as List shows it: ID (Agents keeps one agent per
	// id), Name, Pool, Size, Request and addresses. Agents sets State and
	// Created.
	Node provider.Node
	// Label names the node in its join tokens; Slots caps its slots there
	// (0: the coordinator's default cap).
	Label string
	Slots int
	// WorkDir is created (0700) before the first start and removed by
	// Delete.
	WorkDir string
	// Command returns a new command for each start: program, arguments
	// and base environment (nil: the coordinator's). Agents adds Env and a
	// fresh join token to that environment, and sets its output.
	Command func() *exec.Cmd
	// Env is added to every start's environment.
	Env []string
	// Log receives the agent's output and its supervision messages.
	Log hclog.Logger
}

// Agents is the node book of the providers that run agents on this machine
// (local directly, netns in namespaces): one supervised agent process per
// node. Each start of an agent gets a fresh single-use join token in its
// environment; an agent that exits is started again (Supervise); Delete and
// Close stop it (SIGTERM, SIGKILL after StopTimeout). It is safe for
// concurrent use.
type Agents struct {
	t       provider.Target
	restart RestartPolicy

	mu     sync.Mutex // protects procs, closed
	procs  map[string]*agentProc
	closed bool
}

type agentProc struct {
	node     provider.Node
	workDir  string
	sup      *Supervised // nil while starting
	cancel   context.CancelFunc
	deleting bool
}

// NewAgents returns an empty book whose agents get their join tokens from t
// and are restarted after the delays of restart (validated by the caller).
func NewAgents(t provider.Target, restart RestartPolicy) *Agents {
	return &Agents{t: t, restart: restart, procs: map[string]*agentProc{}}
}

// Has reports whether id has an agent (starting, running or deleting).
func (a *Agents) Has(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[id] != nil
}

// Start starts ag's agent, keeps it running until Delete or Close, and
// returns its node. An error starting it the first time (a bad binary, no
// token) is returned and leaves nothing behind but the work dir.
func (a *Agents) Start(ag Agent) (provider.Node, error) {
	id := ag.Node.ID
	ag.Node.State, ag.Node.Created = provider.StateCreating, time.Now()
	p := &agentProc{node: ag.Node, workDir: ag.WorkDir}
	a.mu.Lock()
	switch {
	case a.closed:
		a.mu.Unlock()
		return provider.Node{}, provider.ErrNotStarted
	case a.procs[id] != nil:
		a.mu.Unlock()
		return provider.Node{}, fmt.Errorf("%w: %s", ErrDuplicate, id)
	}
	a.procs[id] = p // listed as creating from now on
	a.mu.Unlock()
	fail := func(err error) (provider.Node, error) {
		a.mu.Lock()
		delete(a.procs, id)
		a.mu.Unlock()
		return provider.Node{}, err
	}
	if err := os.MkdirAll(ag.WorkDir, 0o700); err != nil {
		return fail(fmt.Errorf("create work dir of %s: %w", id, err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	sup, err := Supervise(ctx, ag.Log, a.restart, func() (*exec.Cmd, error) {
		tok, err := a.t.JoinTokenEnv(ag.Label, ag.Slots)
		if err != nil {
			return nil, err
		}
		cmd := ag.Command()
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(append(cmd.Env, ag.Env...), tok)
		return cmd, nil
	})
	if err != nil {
		cancel()
		return fail(err)
	}
	a.mu.Lock()
	if a.closed { // Close ran while it started: it did not see sup
		a.mu.Unlock()
		cancel()
		sup.Wait()
		return fail(provider.ErrNotStarted)
	}
	p.sup, p.cancel = sup, cancel
	n := p.state()
	a.mu.Unlock()
	return n, nil
}

// state returns p's node with its current state; a.mu is held.
func (p *agentProc) state() provider.Node {
	n := p.node
	switch {
	case p.deleting:
		n.State = provider.StateDeleting
	case p.sup != nil && p.sup.PID() > 0:
		n.State = provider.StateRunning
	default:
		n.State = provider.StateCreating
	}
	return n
}

// List returns the nodes that have an agent, sorted by id: running while
// the agent process runs, creating until it started and while it waits to
// be started again, deleting until Delete is done.
func (a *Agents) List() []provider.Node {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]provider.Node, 0, len(a.procs))
	for _, p := range a.procs {
		out = append(out, p.state())
	}
	slices.SortFunc(out, func(x, y provider.Node) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

// PID returns the pid of id's agent (0 while none runs), and whether id
// has an agent.
func (a *Agents) PID(id string) (pid int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.procs[id]
	if p == nil {
		return 0, false
	}
	if p.sup == nil {
		return 0, true
	}
	return p.sup.PID(), true
}

// Delete stops each node's agent and removes its work dir, as deleting a
// machine removes its disk; a node is gone (no longer listed) once both
// are done. An unknown id is gone already. A failed removal leaves the node
// listed as deleting; deleting it again retries.
func (a *Agents) Delete(ids []string) error {
	var errs []error
	for _, id := range ids {
		a.mu.Lock()
		p := a.procs[id]
		if p == nil || p.sup == nil { // gone, or still starting: Start owns it
			a.mu.Unlock()
			if p != nil {
				errs = append(errs, fmt.Errorf("delete %s: its agent is still starting", id))
			}
			continue
		}
		p.deleting = true
		a.mu.Unlock()
		p.cancel()
		p.sup.Wait()
		if err := os.RemoveAll(p.workDir); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: remove its work dir: %w", id, err))
			continue
		}
		a.mu.Lock()
		if a.procs[id] == p {
			delete(a.procs, id)
		}
		a.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close stops every agent, together, and returns once all exited; work
// dirs stay. Later Starts fail with provider.ErrNotStarted.
func (a *Agents) Close() {
	a.mu.Lock()
	a.closed = true
	var sups []*agentProc
	for _, p := range a.procs {
		if p.sup != nil {
			sups = append(sups, p)
		}
	}
	a.procs = map[string]*agentProc{}
	a.mu.Unlock()
	for _, p := range sups {
		p.cancel()
	}
	for _, p := range sups {
		p.sup.Wait()
	}
}
