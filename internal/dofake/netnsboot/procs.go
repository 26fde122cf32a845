package netnsboot

import (
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cloudml/cloudml/internal/netns"
)

// strays returns the live processes in the network namespace netIno that
// are not the node's Docker: its dockerd (daemon), the processes naming
// its exec root (containerd, the shims) and everything below them. On a
// node between droplets there are none.
func strays(netIno uint64, daemon int, execRoot string) []netns.Proc {
	procs := netns.Procs()
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	docker := map[int]bool{}
	var mark func(pid int)
	mark = func(pid int) {
		if docker[pid] {
			return
		}
		docker[pid] = true
		for _, c := range children[pid] {
			mark(c)
		}
	}
	for _, p := range procs {
		if p.PID == daemon || (execRoot != "" && strings.Contains(p.Cmdline, execRoot+"/")) {
			mark(p.PID)
		}
	}
	var out []netns.Proc
	for _, p := range procs {
		if p.NetIno == netIno && p.State != 'Z' && !docker[p.PID] && p.PID != os.Getpid() {
			out = append(out, p)
		}
	}
	return out
}

// killAll SIGKILLs pids and waits up to timeout for them to go; it
// returns those still alive.
func killAll(pids []int, timeout time.Duration) []int {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return netns.WaitGone(pids, timeout)
}
