package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// enterMountNS moves the calling (locked) thread into a new mount
// namespace set up for the task: mount events do not propagate back, the
// work dir is reachable by the task user, and the secrets directory is
// covered by an empty read-only tmpfs.
func (r *processRuntime) enterMountNS() error {
	// Paths are resolved before the namespace changes what they show.
	closed, err := r.closedAncestor()
	if err != nil {
		return err
	}
	if closed != "" {
		if real, err := filepath.EvalSymlinks(r.cfg.WorkDir); err != nil || real != r.cfg.WorkDir {
			return fmt.Errorf("%w: the work dir %s is reached through a symlink (%s); give its real path", ErrIsolation, r.cfg.WorkDir, real)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("%w: new mount namespace: %v", ErrIsolation, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("%w: make mounts private: %v", ErrIsolation, err)
	}
	if closed != "" {
		// Opened in the new namespace (a bind source must be in it), before
		// the tmpfs covers the path.
		workFD, err := unix.Open(r.cfg.WorkDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%w: open work dir: %v", ErrIsolation, err)
		}
		err = r.bridge(closed, workFD)
		unix.Close(workFD)
		if err != nil {
			return err
		}
	}
	if r.cfg.Secrets == "" {
		return nil
	}
	err = unix.Mount("tmpfs", r.cfg.Secrets, "tmpfs",
		unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0000,size=4k")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: cover %s: %v", ErrIsolation, r.cfg.Secrets, err)
	}
	return nil
}

// bridge covers closed (a directory above the work dir that the task user
// cannot search) with an empty tmpfs holding only the path down to the
// work dir, and bind-mounts the work dir (workFD) there. Everything else
// under closed was out of the task user's reach before and stays so.
func (r *processRuntime) bridge(closed string, workFD int) error {
	if err := unix.Mount("tmpfs", closed, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size=64k"); err != nil {
		return fmt.Errorf("%w: cover %s: %v", ErrIsolation, closed, err)
	}
	rel, err := filepath.Rel(closed, r.cfg.WorkDir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIsolation, err)
	}
	p := closed
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, c)
		if err := os.Mkdir(p, 0o711); err != nil {
			return fmt.Errorf("%w: %v", ErrIsolation, err)
		}
		if err := os.Chmod(p, 0o711); err != nil { // whatever the umask
			return fmt.Errorf("%w: %v", ErrIsolation, err)
		}
	}
	src := fmt.Sprintf("/proc/self/fd/%d", workFD)
	if err := unix.Mount(src, r.cfg.WorkDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("%w: bind the work dir: %v", ErrIsolation, err)
	}
	return nil
}

// reachable checks, when tasks get no mount namespace, that the task user
// can reach the work dir.
func (r *processRuntime) reachable() error {
	closed, err := r.closedAncestor()
	if err != nil {
		return err
	}
	if closed != "" {
		return fmt.Errorf("%w: the task user %s cannot reach the work dir %s: %s is closed to it, and this agent cannot make mount namespaces; "+
			"give %s o+x or use a work dir such as /var/lib/cloudml", ErrIsolation, r.cfg.User, r.cfg.WorkDir, closed, closed)
	}
	return nil
}

// closedAncestor returns the highest directory above the work dir that the
// task user cannot search, or "". The work dir itself must be searchable.
func (r *processRuntime) closedAncestor() (string, error) {
	if r.cfg.WorkDir == "" {
		return "", nil
	}
	u := r.cfg.User
	var st unix.Stat_t
	if err := unix.Stat(r.cfg.WorkDir, &st); err != nil {
		return "", fmt.Errorf("%w: work dir: %v", ErrIsolation, err)
	}
	if !searchable(&st, u) {
		return "", fmt.Errorf("%w: the task user %s cannot enter the work dir %s (mode %o)", ErrIsolation, u, r.cfg.WorkDir, st.Mode&0o7777)
	}
	closed := ""
	for d := filepath.Dir(r.cfg.WorkDir); ; d = filepath.Dir(d) {
		if err := unix.Stat(d, &st); err != nil {
			return "", fmt.Errorf("%w: %v", ErrIsolation, err)
		}
		if !searchable(&st, u) {
			closed = d
		}
		if d == "/" {
			break
		}
	}
	if closed == "/" {
		return "", fmt.Errorf("%w: the task user %s cannot search /", ErrIsolation, u)
	}
	return closed, nil
}

// searchable reports whether u (with no supplementary groups) may search
// the directory st describes, by its mode bits as the kernel checks them.
func searchable(st *unix.Stat_t, u *User) bool {
	switch {
	case st.Uid == u.UID:
		return st.Mode&0o100 != 0
	case st.Gid == u.GID:
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}
