package netns

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is what Cleanup needs to know about a process.
type proc struct {
	pid, ppid int
	state     byte   // 'Z' for a zombie
	comm      string // program name
	netIno    uint64 // inode of its network namespace
	cmdline   string // arguments joined by spaces
}

// listProcs reads every process in /proc; processes that vanish while being
// read are skipped.
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
		p, ok := readProc(pid)
		if ok {
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
	p := proc{pid: pid, comm: string(data[open+1 : closing]), state: f[0][0]}
	p.ppid, _ = strconv.Atoi(f[1])
	if st, err := os.Stat(dir + "/ns/net"); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			p.netIno = sys.Ino
		}
	}
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

// selectProcs returns the live processes that match, plus all their
// descendants (task containers run in namespaces of their own below the
// containerd shims), never including this process.
func selectProcs(procs []proc, match func(proc) bool) []proc {
	children := map[int][]proc{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	seen := map[int]bool{os.Getpid(): true}
	var out []proc
	var walk func(p proc)
	walk = func(p proc) {
		if seen[p.pid] {
			return
		}
		seen[p.pid] = true
		if p.state != 'Z' {
			out = append(out, p)
		}
		for _, c := range children[p.pid] {
			walk(c)
		}
	}
	for _, p := range procs {
		if match(p) {
			walk(p)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state != 'Z'
}

// waitGone polls until none of pids is alive or the timeout passes; it
// returns the ones still alive.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}
