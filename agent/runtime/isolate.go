package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrIsolation is wrapped when the process runtime cannot keep tasks away
// from the agent's secrets on this machine, so it starts none.
var ErrIsolation = errors.New("cannot keep tasks away from the agent's secrets")

// ProcessConfig says whom the process runtime runs tasks as and what they
// must not read.
//
// The guarantee: a task cannot read the files under Secrets, nor the
// agent's environment or memory. How, depending on who the agent is:
//
//   - The agent runs as root: each task runs as User (never root), with no
//     supplementary groups, in a private mount namespace where Secrets is
//     covered by an empty read-only tmpfs (Secrets itself must be 0700 and
//     the agent's). Where a directory above WorkDir is closed to User (a
//     0700 state or test directory), the task sees an empty tmpfs there
//     that holds only the path down to WorkDir, bind-mounted, so its files
//     are reachable and nothing else that was closed to it becomes visible.
//     Without mount namespaces (a container without CAP_SYS_ADMIN) the file
//     modes alone protect Secrets, and WorkDir must be reachable by User.
//   - The agent is not root: tasks run as the agent's user, confined by
//     Landlock (Linux 5.13+): every file hierarchy is granted except the
//     path down to Secrets, so Secrets cannot be read or listed, and the
//     directories on that path (from / down to WorkDir) cannot be listed or
//     written directly. Beneath WorkDir a task may only read, except in its
//     own writable directories (Spec.Writable), so it cannot change the
//     staging cache, its log copies or other attempts. Landlock also keeps
//     the task from ptrace and from /proc/<agent>/environ, mem and fd, and
//     (Linux 6.12+) from signalling the agent. Without Landlock the runtime
//     refuses to start.
//
// Limits: a task still reads what its user may read elsewhere on the
// machine (other tasks' files under the same user, world-readable files),
// the agent's command line in /proc (never put a secret in argv), and
// under Landlock any other path to the same files (a bind mount or hard
// link of Secrets elsewhere), and the Docker socket if the agent's user is
// in the docker group.
type ProcessConfig struct {
	// User is the account tasks run as; nil means the agent's own user.
	// Running as another user needs root; running tasks as root is
	// refused when Secrets is set.
	User *User
	// WorkDir is the agent's work directory: the tasks' files (staged
	// code, attempt directories) are beneath it.
	WorkDir string
	// Secrets is the directory tasks must never read; "" means nothing is
	// hidden (tests of the runtime alone).
	Secrets string
}

// mode is how tasks are kept from the secrets.
type mode int

const (
	modePlain    mode = iota // nothing to hide, same user
	modeUser                 // another user (the agent is root)
	modeLandlock             // the agent's own user, confined by Landlock
)

type processRuntime struct {
	cfg     ProcessConfig
	mode    mode
	mountNS bool // modeUser: tasks get a private mount namespace
	abi     int  // modeLandlock: the kernel's Landlock ABI version
}

// NewProcess returns the runtime that runs each task as a plain process
// group on the node, kept from cfg.Secrets as ProcessConfig says, or an
// error wrapping ErrIsolation or ErrUser when this machine cannot do that.
func NewProcess(cfg ProcessConfig) (Runtime, error) {
	r := &processRuntime{cfg: cfg}
	if cfg.Secrets != "" || cfg.WorkDir != "" {
		for _, p := range []*string{&r.cfg.Secrets, &r.cfg.WorkDir} {
			if *p == "" {
				continue
			}
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrIsolation, err)
			}
			*p = abs
		}
	}
	euid := uint32(os.Geteuid())
	switch {
	case cfg.User != nil && cfg.User.UID != euid:
		if euid != 0 {
			return nil, fmt.Errorf("%w: running tasks as %s needs an agent running as root (it runs as uid %d); leave the task user unset to run them as the agent's own user under Landlock", ErrUser, cfg.User, euid)
		}
		r.mode = modeUser
		r.mountNS = onFreshThread(func() error { return unix.Unshare(unix.CLONE_NEWNS) }) == nil
	case cfg.Secrets == "":
		r.mode = modePlain
	case euid == 0:
		return nil, fmt.Errorf("%w: tasks would run as root; give them another user (--task-user, default nobody)", ErrIsolation)
	default:
		r.abi = landlockABI()
		if r.abi < 1 {
			return nil, fmt.Errorf("%w: tasks run as the agent's own user (uid %d) and this kernel has no Landlock to confine them; run the agent as root (tasks then run as --task-user) or on Linux 5.13+ with Landlock enabled", ErrIsolation, euid)
		}
		r.mode = modeLandlock
	}
	return r, nil
}

// Isolation says in words how tasks are kept from the agent's secrets.
func (r *processRuntime) Isolation() string {
	switch r.mode {
	case modeUser:
		if r.mountNS {
			return fmt.Sprintf("tasks run as %s in a private mount namespace that hides %s", r.cfg.User, r.cfg.Secrets)
		}
		return fmt.Sprintf("tasks run as %s; %s is closed to them by its mode (no mount namespaces here)", r.cfg.User, r.cfg.Secrets)
	case modeLandlock:
		return fmt.Sprintf("tasks run as the agent's user, confined by Landlock ABI %d away from %s", r.abi, r.cfg.Secrets)
	}
	return "tasks run as the agent's user; nothing is hidden from them"
}

// configure sets up cmd for the task's user: the credential, and the
// writable directories handed to that user.
func (r *processRuntime) configure(cmd *exec.Cmd, spec Spec) error {
	if r.mode != modeUser {
		return nil
	}
	if err := r.checkSecrets(); err != nil {
		return err
	}
	u := r.cfg.User
	for _, d := range spec.Writable {
		if err := os.Lchown(d, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("give %s to the task user: %w", d, err)
		}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
	return nil
}

// checkSecrets refuses to start a task while the secrets directory is open
// to anyone but the agent.
func (r *processRuntime) checkSecrets() error {
	if r.cfg.Secrets == "" {
		return nil
	}
	var st unix.Stat_t
	err := unix.Lstat(r.cfg.Secrets, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrIsolation, r.cfg.Secrets, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) || st.Mode&0o077 != 0 {
		return fmt.Errorf("%w: %s must be a directory of the agent's with mode 0700 (it has mode %o, owner %d); no task starts until it is",
			ErrIsolation, r.cfg.Secrets, st.Mode&0o7777, st.Uid)
	}
	return nil
}

// start starts cmd, on a thread of its own when the task needs a mount
// namespace or a Landlock domain: the child inherits them from that thread
// only, and the thread ends with the start.
func (r *processRuntime) start(cmd *exec.Cmd, writable []string) error {
	switch {
	case r.mode == modeUser && r.mountNS:
		return onFreshThread(func() error {
			if err := r.enterMountNS(); err != nil {
				return err
			}
			return cmd.Start()
		})
	case r.mode == modeUser:
		if err := r.reachable(); err != nil {
			return err
		}
	case r.mode == modeLandlock:
		return onFreshThread(func() error {
			if err := landlockRestrict(r.abi, r.cfg.Secrets, r.cfg.WorkDir, writable); err != nil {
				return err
			}
			return cmd.Start()
		})
	}
	return cmd.Start()
}

// init keeps the main goroutine on the main thread for good, so no other
// goroutine ever runs there. The main thread is the one /proc/<pid> and
// kill(pid) of the agent name: were it confined or moved to another mount
// namespace by onFreshThread, a task in the same Landlock domain could
// read the agent's environment and signal it.
func init() { goruntime.LockOSThread() }

// errMainThread means onFreshThread found itself on the main thread.
var errMainThread = errors.New("a task start landed on the agent's main thread")

// onFreshThread runs fn on an OS thread that no other goroutine ever uses
// and that ends with fn: whatever fn changes in the thread (namespaces,
// Landlock, no_new_privs) stays with it and the processes it starts.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		// Never unlocked: the runtime then ends the thread with the
		// goroutine instead of reusing it.
		if unix.Gettid() == unix.Getpid() {
			errc <- fmt.Errorf("%w: %w", ErrIsolation, errMainThread) // init prevents it
			return
		}
		errc <- fn()
	}()
	return <-errc
}
