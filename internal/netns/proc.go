package netns

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is what Cleanup (and netnsboot's sweep of a droplet's node) needs
// to know about a process.
type Proc struct {
	PID, PPID int
	State     byte   // 'Z' for a zombie
	Comm      string // program name
	NetIno    uint64 // inode of its network namespace
	Cmdline   string // arguments joined by spaces
}

// Procs reads every process in /proc; processes that vanish while being
// read are skipped.
func Procs() []Proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := ReadProc(pid)
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// ReadProc reads process pid; false when it does not exist (or vanished
// while being read).
func ReadProc(pid int) (Proc, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Proc{}, false
	}
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return Proc{}, false
	}
	f := strings.Fields(string(data[closing+1:]))
	if len(f) < 2 {
		return Proc{}, false
	}
	p := Proc{PID: pid, Comm: string(data[open+1 : closing]), State: f[0][0]}
	p.PPID, _ = strconv.Atoi(f[1])
	p.NetIno = Inode(dir + "/ns/net")
	if cmd, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.Cmdline = string(bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '}))
	}
	return p, true
}

// Inode returns the inode of path (a namespace file), or 0.
func Inode(path string) uint64 {
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
func selectProcs(procs []Proc, match func(Proc) bool) []Proc {
	children := map[int][]Proc{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p)
	}
	seen := map[int]bool{os.Getpid(): true}
	var out []Proc
	var walk func(p Proc)
	walk = func(p Proc) {
		if seen[p.PID] {
			return
		}
		seen[p.PID] = true
		if p.State != 'Z' {
			out = append(out, p)
		}
		for _, c := range children[p.PID] {
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
	p, ok := ReadProc(pid)
	return ok && p.State != 'Z'
}

// WaitGone polls until none of pids is alive or the timeout passes; it
// returns the ones still alive.
func WaitGone(pids []int, timeout time.Duration) []int {
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
