package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/cloudml/cloudml/coordinator/provider/local"
)

// Run sets the cluster up if Setup was not called, starts one agent per
// node, and keeps them running until ctx ends (an agent that exits is
// restarted; see local.Supervise); then it stops the agents (SIGTERM,
// SIGKILL after local.StopTimeout) and closes the cluster.
func (p *Provider) Run(ctx context.Context, t Target) (err error) {
	lp, err := local.New(local.Config{Nodes: 1, AgentBinary: p.cfg.AgentBinary, WorkDir: p.cfg.WorkDir}, nil)
	if err != nil {
		return err
	}
	bin, err := lp.ResolveAgent()
	if err != nil {
		return err
	}
	if err := p.Setup(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	addr, err := p.AgentAddr(t.Addr)
	if err != nil {
		return err
	}
	c := p.Cluster()
	var agents []*local.Supervised
	defer func() {
		for _, a := range agents {
			a.Wait()
		}
	}()
	ctx, cancel := context.WithCancel(ctx) // also stops the started agents if one fails to start
	defer cancel()
	for idx, node := range c.Nodes() {
		i := idx + 1
		workDir := filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
		if err := os.MkdirAll(workDir, 0o700); err != nil {
			return fmt.Errorf("create work dir of node %d: %w", i, err)
		}
		log := p.log.Named("agent-"+strconv.Itoa(i)).With("namespace", node.Name, "address", node.Addr)
		args := p.Args(i, addr, node)
		a, err := local.Supervise(ctx, log, func() (*exec.Cmd, error) {
			tok, err := t.JoinTokenEnv("netns "+node.Name, p.cfg.Slots)
			if err != nil {
				return nil, err
			}
			cmd := c.Command(context.Background(), idx, bin, args...)
			cmd.Env = append(append(cmd.Env, p.cfg.Env...), tok)
			return cmd, nil
		})
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
		agents = append(agents, a)
	}
	p.log.Info("netns agents started", "nodes", len(agents), "coordinator", addr)
	<-ctx.Done()
	return nil
}
