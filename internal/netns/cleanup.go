package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Cleanup removes everything a cluster named prefix may have left behind,
// for instance after its process was killed: processes in its namespaces
// or started from its run dir (dockerd gets SIGTERM first, everything else
// SIGKILL, container processes below the containerd shims included), mounts
// under its node directories and run dir, its namespaces, veths, bridge and
// iptables rules, and its state file. It is safe to call when nothing is
// left. Create calls it first.
func Cleanup(prefix string) error {
	if !nameRE.MatchString(prefix) {
		return fmt.Errorf("%w: name %q", ErrInvalidConfig, prefix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return cleanup(ctx, prefix, hclog.NewNullLogger())
}

// CleanupStale runs Cleanup for every recorded cluster whose owning process
// is gone (a crashed test or coordinator), whatever its name. Create calls
// it too.
func CleanupStale() error {
	unlock, err := lockRunDir()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, prefix := range stalePrefixes() {
		errs = append(errs, Cleanup(prefix))
	}
	return errors.Join(errs...)
}

func cleanup(ctx context.Context, prefix string, log hclog.Logger) error {
	st, _ := readState(prefix)
	var nodeDirs []string
	if st.WorkDir != "" {
		nodeDirs, _ = filepath.Glob(filepath.Join(st.WorkDir, prefix+"-n[0-9]*"))
	}
	var errs []error
	if n, err := killAll(prefix, nodeDirs); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		log.Info("killed leftover processes", "prefix", prefix, "count", n)
	}
	errs = append(errs, unmountUnder(append([]string{runDir(prefix)}, nodeDirs...)...))
	errs = append(errs, deleteNetwork(ctx, prefix))
	if err := os.RemoveAll(runDir(prefix)); err != nil {
		errs = append(errs, err)
	}
	for _, d := range nodeDirs {
		// Keep dockerd.log for post-mortems; drop the (root-owned, large)
		// data root.
		if err := removeTree(filepath.Join(d, "data")); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return removeState(prefix)
}

// killAll ends the processes of prefix: those inside its namespaces, those
// whose command line names its run dir or node dirs, and their
// descendants. It returns how many there were.
func killAll(prefix string, nodeDirs []string) (int, error) {
	inos := map[uint64]bool{}
	for _, ns := range namespaces(prefix) {
		if ino := Inode(netnsPath(ns)); ino != 0 {
			inos[ino] = true
		}
	}
	marks := append([]string{runDir(prefix) + "/"}, nodeDirs...)
	match := func(p Proc) bool {
		if inos[p.NetIno] {
			return true
		}
		for _, m := range marks {
			if strings.Contains(p.Cmdline, m) {
				return true
			}
		}
		return false
	}
	procs := selectProcs(Procs(), match)
	if len(procs) == 0 {
		return 0, nil
	}
	// Kill the task containers first (the children of containerd shims):
	// a daemon shutting down would wait out each one's stop grace period.
	shims := map[int]bool{}
	for _, p := range procs {
		if strings.HasPrefix(p.Comm, "containerd-shim") {
			shims[p.PID] = true
		}
	}
	var tasks []int
	for _, p := range procs {
		if shims[p.PPID] {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			tasks = append(tasks, p.PID)
		}
	}
	WaitGone(tasks, 5*time.Second)
	// Then give daemons a chance to clean up their containers and mounts.
	var daemons []int
	for _, p := range procs {
		if p.Comm == "dockerd" {
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
			daemons = append(daemons, p.PID)
		}
	}
	WaitGone(daemons, 15*time.Second)
	var pids []int
	for _, p := range selectProcs(Procs(), match) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		pids = append(pids, p.PID)
	}
	if left := WaitGone(pids, 10*time.Second); len(left) > 0 {
		return len(procs), fmt.Errorf("processes of %s survive SIGKILL: %v", prefix, left)
	}
	return len(procs), nil
}
