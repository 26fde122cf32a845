package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/internal/logging"
	cluster "github.com/cloudml/cloudml/internal/netns"
)

// Run sets the cluster up if Setup was not called, starts one agent per
// node, and keeps them until ctx ends; then it stops the agents (SIGTERM,
// SIGKILL after StopTimeout) and closes the cluster. An agent that exits
// early is logged, not restarted.
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
	var agents []*agent
	defer func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Go(a.stop)
		}
		wg.Wait()
	}()
	for idx, node := range c.Nodes() {
		a, err := p.start(c, bin, idx, addr, t.Token, node)
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}
	p.log.Info("netns agents started", "nodes", len(agents), "coordinator", addr)
	<-ctx.Done()
	return nil
}

// agent is a running agent process.
type agent struct {
	pid    int
	log    hclog.Logger
	exited chan struct{} // closed once Wait returned
}

func (p *Provider) start(c *cluster.Cluster, bin string, idx int, addr, token string, node cluster.Node) (*agent, error) {
	i := idx + 1
	log := p.log.Named("agent-" + strconv.Itoa(i))
	workDir := filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, fmt.Errorf("create work dir of node %d: %w", i, err)
	}
	cmd := c.Command(context.Background(), idx, bin, p.Args(i, addr, token, node)...)
	cmd.Env = append(cmd.Env, p.cfg.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout := logging.NewLineWriter(log, "stdout")
	stderr := logging.NewLineWriter(log, "stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %d (%s): %w", i, bin, err)
	}
	log.Info("agent started", "pid", cmd.Process.Pid, "namespace", node.Name, "address", node.Addr, "work_dir", workDir)
	a := &agent{pid: cmd.Process.Pid, log: log, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		stdout.Flush()
		stderr.Flush()
		status := "exit 0"
		if err != nil {
			status = err.Error()
		}
		log.Info("agent exited", "pid", a.pid, "status", status)
		close(a.exited)
	}()
	return a, nil
}

func (a *agent) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = syscall.Kill(a.pid, syscall.SIGTERM)
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-a.exited:
	case <-timer.C:
		a.log.Warn("agent did not stop after SIGTERM; killing it", "pid", a.pid)
		_ = syscall.Kill(a.pid, syscall.SIGKILL)
		<-a.exited
	}
}
