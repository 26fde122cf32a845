package coordinator

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudml/cloudml/coordinator/pulse"
)

// startPulse starts the pulse process when Config.HeartbeatListen asks for
// one (package pulse: heartbeats answered in a process of their own) and
// records the beats it answers as the node's own, as Heartbeat does. If it
// ends, new sessions are told no port and agents heartbeat on their
// sessions' connections; those it answered fall back by themselves.
func (c *Coordinator) startPulse() (stop func(), err error) {
	if c.cfg.HeartbeatListen == "" {
		return func() {}, nil
	}
	cfg := pulse.Config{
		Listen: c.cfg.HeartbeatListen,
		PKIDir: filepath.Join(c.cfg.StateDir, PKIDirName),
		Period: c.cfg.HeartbeatPeriod,
		Logger: c.log,
	}
	p, err := pulse.Start(c.cfg.PulseCommand, cfg, os.Stderr, c.pulseBeat)
	if err != nil {
		return nil, fmt.Errorf("heartbeat listen address %s: %w", c.cfg.HeartbeatListen, err)
	}
	c.pulsePort.Store(int32(p.Port()))
	c.log.Info("heartbeats answered by the pulse process", "addr", p.Addr(), "pid", p.Pid())
	stopped := make(chan struct{})
	go func() {
		select {
		case <-p.Done():
			c.pulsePort.Store(0)
			c.log.Error("the pulse process ended; agents heartbeat on their sessions' connections", "error", p.Err())
		case <-stopped:
		}
	}()
	return func() {
		close(stopped)
		c.pulsePort.Store(0)
		p.Stop()
	}, nil
}

// pulseBeat records a heartbeat the pulse process answered, if the
// certificate it came with is still one of its node's: a removed node's,
// or a replaced one's, changes nothing.
func (c *Coordinator) pulseBeat(b pulse.Beat) {
	if !c.trust.currentNode(b.Node, b.Serial) {
		return
	}
	c.live.beat(b.Node, time.Unix(0, b.At), b.RuntimeError)
}
