package cli

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// machineWatch shows machines on their way up or down: a bar each on a
// terminal (machineBars), else a line each time one moves on
// (machineLines). Made by machineProgress; done ends it.
type machineWatch interface {
	// update shows the machines as last listed.
	update(ms []*cloudmlv1.Machine)
	// done ends the display; call it before printing anything else.
	done()
}

// machineProgress returns bars on stderr when it is a terminal, else lines
// on stderr.
func (a *App) machineProgress() machineWatch {
	if isTerminal(a.Stderr) {
		return &machineBars{p: mpb.New(mpb.WithOutput(a.Stderr), mpb.WithWidth(24)), bars: map[string]*machineBar{}}
	}
	return &machineLines{w: a.Stderr, seen: map[string]string{}}
}

// upSteps are the steps of a machine coming up: created, booted, agent
// registered, ready (swarm joined); downSteps of one going: deleting, gone.
const (
	upSteps   = 4
	downSteps = 2
)

// step is how far a machine got on its way up, or down.
func step(s cloudmlv1.MachineState, down bool) int64 {
	if down {
		switch s {
		case cloudmlv1.MachineState_MACHINE_STATE_GONE, cloudmlv1.MachineState_MACHINE_STATE_LOST:
			return downSteps
		}
		return 1
	}
	switch s {
	case cloudmlv1.MachineState_MACHINE_STATE_CREATING:
		return 1
	case cloudmlv1.MachineState_MACHINE_STATE_BOOTED, cloudmlv1.MachineState_MACHINE_STATE_STOPPED:
		return 2
	case cloudmlv1.MachineState_MACHINE_STATE_REGISTERED:
		return 3
	case cloudmlv1.MachineState_MACHINE_STATE_READY:
		return upSteps
	}
	return 0
}

// machineStatus is a machine's state in words: "registered as node-3
// (host-a): joining the swarm", "ready as node-3 (host-a), swarm
// worker", "gone: deleted: cluster down".
func machineStatus(m *cloudmlv1.Machine) string {
	s := machineState(m.GetState())
	if m.GetNodeId() != "" && live(m) {
		s += " as " + nodeLabel(m.GetNodeId(), &cloudmlv1.Node{Hostname: m.GetHostname()})
	}
	if m.GetState() == cloudmlv1.MachineState_MACHINE_STATE_READY && m.GetSwarmRole() != "" {
		s += ", swarm " + m.GetSwarmRole()
	}
	if msg := m.GetMessage(); msg != "" && m.GetState() != cloudmlv1.MachineState_MACHINE_STATE_READY {
		s += ": " + msg
	}
	return s
}

// machineBars draws a bar per machine.
type machineBars struct {
	p    *mpb.Progress
	bars map[string]*machineBar
}

// machineBar is one machine's bar.
type machineBar struct {
	bar    *mpb.Bar
	down   bool
	status atomic.Pointer[string]
	ended  bool
}

func (b *machineBars) update(ms []*cloudmlv1.Machine) {
	for _, m := range ms {
		mb := b.bars[m.GetId()]
		if mb == nil {
			mb = &machineBar{down: !live(m) && m.GetState() != cloudmlv1.MachineState_MACHINE_STATE_LOST}
			total := int64(upSteps)
			if mb.down {
				total = downSteps
			}
			label := fmt.Sprintf("machine %s", m.GetId())
			if m.GetPool() != "" {
				label += " (" + m.GetPool() + ")"
			}
			mb.status.Store(new(string))
			mb.bar = b.p.New(total, mpb.BarStyle().Lbound("[").Rbound("]"),
				mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return *mb.status.Load() }, decor.WCSyncSpace)),
			)
			b.bars[m.GetId()] = mb
		}
		if mb.ended {
			continue
		}
		st := machineStatus(m)
		mb.status.Store(&st)
		n := step(m.GetState(), mb.down)
		failed := !mb.down && !live(m)
		switch {
		case failed:
			mb.bar.Abort(false)
			mb.ended = true
		case settled(m, mb.down):
			mb.bar.SetCurrent(n)
			mb.ended = true
		default:
			mb.bar.SetCurrent(n)
		}
	}
}

func (b *machineBars) done() {
	for _, mb := range b.bars {
		if !mb.ended {
			mb.bar.Abort(false)
		}
	}
	b.p.Wait()
}

// machineLines prints a line each time a machine moves on.
type machineLines struct {
	w    io.Writer
	seen map[string]string // machine id → its status as last printed
}

func (l *machineLines) update(ms []*cloudmlv1.Machine) {
	for _, m := range ms {
		st := machineStatus(m)
		if l.seen[m.GetId()] == st {
			continue
		}
		l.seen[m.GetId()] = st
		fmt.Fprintf(l.w, "machine %s: %s\n", m.GetId(), st)
	}
}

func (l *machineLines) done() {}
