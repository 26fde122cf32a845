package coordinator

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudml/cloudml/coordinator/pulse"
)

// Restarts of a pulse process that ended: after pulseRestartMin, doubling
// to pulseRestartMax while it keeps failing, from the minimum again once
// one ran for pulseRestartReset.
const (
	pulseRestartMin   = time.Second
	pulseRestartMax   = 30 * time.Second
	pulseRestartReset = time.Minute
)

// startPulse starts the pulse process when Config.HeartbeatListen asks for
// one (package pulse: heartbeats answered in a process of their own) and
// records the beats it answers as the node's own, as Heartbeat does. A
// first start that fails is an error: the user asked for it. If it ends
// later it is started again (pulseRestartMin and on); meanwhile new
// sessions are told no port and agents heartbeat on their sessions'
// connections, those it answered by themselves, until they try it again
// (agent: pulseRest).
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
	start := func() (*pulse.Process, error) {
		p, err := pulse.Start(c.cfg.PulseCommand, cfg, os.Stderr, c.pulseBeat)
		if err != nil {
			return nil, fmt.Errorf("heartbeat listen address %s: %w", c.cfg.HeartbeatListen, err)
		}
		c.pulsePort.Store(int32(p.Port()))
		c.log.Info("heartbeats answered by the pulse process", "addr", p.Addr(), "pid", p.Pid())
		return p, nil
	}
	p, err := start()
	if err != nil {
		return nil, err
	}
	stopped, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		wait := pulseRestartMin
		for p != nil {
			since := time.Now()
			select {
			case <-p.Done():
			case <-stopped:
				p.Stop()
				return
			}
			c.pulsePort.Store(0)
			if time.Since(since) >= pulseRestartReset {
				wait = pulseRestartMin
			}
			c.log.Error("the pulse process ended; agents heartbeat on their sessions' connections until it is back",
				"error", p.Err(), "restart_in", wait)
			p = c.restartPulse(start, stopped, &wait)
		}
	}()
	return func() {
		close(stopped)
		<-done
		c.pulsePort.Store(0)
	}, nil
}

// restartPulse starts the pulse process again after *wait, doubling
// *wait (up to pulseRestartMax) before each try, until one works; nil
// once stopped closes.
func (c *Coordinator) restartPulse(start func() (*pulse.Process, error), stopped <-chan struct{}, wait *time.Duration) *pulse.Process {
	for {
		select {
		case <-time.After(*wait):
		case <-stopped:
			return nil
		}
		*wait = min(2**wait, pulseRestartMax)
		p, err := start()
		if err == nil {
			return p
		}
		c.log.Error("the pulse process did not start again", "error", err, "retry_in", *wait)
	}
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
