package netnsboot

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is what the sweep needs to know of a process.
type proc struct {
	pid, ppid int
	zombie    bool
	comm      string
	netIno    uint64
	cmdline   string
}

// listProcs reads /proc; processes that vanish meanwhile are skipped.
func listProcs() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

func readProc(pid int) (proc, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return proc{}, false
	}
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return proc{}, false
	}
	f := strings.Fields(string(data[closing+1:]))
	if len(f) < 2 {
		return proc{}, false
	}
	p := proc{pid: pid, comm: string(data[open+1 : closing]), zombie: f[0] == "Z"}
	p.ppid, _ = strconv.Atoi(f[1])
	p.netIno = inode(dir + "/ns/net")
	if cmd, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.cmdline = string(bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '}))
	}
	return p, true
}

// inode returns the inode of path (a namespace file), or 0.
func inode(path string) uint64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// strays returns the live processes in the network namespace netIno that
// are not the node's Docker: its dockerd (daemon), the processes naming
// its exec root (containerd, the shims) and everything below them. On a
// node between droplets there are none.
func strays(netIno uint64, daemon int, execRoot string) []proc {
	procs := listProcs()
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
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
		if p.pid == daemon || (execRoot != "" && strings.Contains(p.cmdline, execRoot+"/")) {
			mark(p.pid)
		}
	}
	var out []proc
	for _, p := range procs {
		if p.netIno == netIno && !p.zombie && !docker[p.pid] && p.pid != os.Getpid() {
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
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if p, ok := readProc(pid); ok && !p.zombie {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond) // polling for exits, not waiting for an outcome
	}
}
