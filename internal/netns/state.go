package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// RunDir holds one state file per live cluster (<prefix>.json, naming the
// owning process and the work dir, so that Cleanup and CleanupStale can find
// a crashed run's leftovers) and each node's exec root and daemon socket
// (<prefix>/n<i>/docker.sock).
const RunDir = "/run/cloudml-netns"

// NetnsDir is where `ip netns` keeps named namespaces.
const NetnsDir = "/var/run/netns"

// state is what a cluster records before it creates anything.
type state struct {
	Prefix     string `json:"prefix"`
	OwnerPID   int    `json:"owner_pid"`
	OwnerStart uint64 `json:"owner_start"` // start time in clock ticks, against pid reuse
	WorkDir    string `json:"work_dir,omitempty"`
	Subnet     string `json:"subnet,omitempty"`
	Nodes      int    `json:"nodes"`
}

func statePath(prefix string) string { return filepath.Join(RunDir, prefix+".json") }

func writeState(s state) error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", RunDir, err)
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(statePath(s.Prefix), data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readState returns the recorded state of prefix, or ok=false.
func readState(prefix string) (state, bool) {
	data, err := os.ReadFile(statePath(prefix))
	if err != nil {
		return state{}, false
	}
	var s state
	if json.Unmarshal(data, &s) != nil || s.Prefix != prefix {
		return state{}, false
	}
	return s, true
}

func removeState(prefix string) error {
	if err := os.Remove(statePath(prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ownerAlive reports whether the process that recorded s still runs.
func (s state) ownerAlive() bool {
	start, ok := procStartTime(s.OwnerPID)
	return ok && start == s.OwnerStart
}

// procStartTime reads field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command (field 2) may contain spaces; fields resume after ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// lockRunDir serializes subnet allocation and state changes between
// processes; the returned function releases the lock.
func lockRunDir() (func(), error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", RunDir, err)
	}
	f, err := os.OpenFile(filepath.Join(RunDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", RunDir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// stalePrefixes lists recorded clusters whose owner process is gone.
func stalePrefixes() []string {
	entries, err := os.ReadDir(RunDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		prefix, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !nameRE.MatchString(prefix) {
			continue
		}
		if s, ok := readState(prefix); ok && !s.ownerAlive() {
			out = append(out, prefix)
		}
	}
	return out
}
