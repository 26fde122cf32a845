package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// landlockABI is the kernel's Landlock ABI version; 0 when it has none.
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// llFileRights are the rights that apply to a file that is not a directory.
const llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
	unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV

// llHandled are the file system rights the ruleset restricts at abi.
func llHandled(abi int) uint64 {
	r := uint64(unix.LANDLOCK_ACCESS_FS_MAKE_SYM<<1 - 1) // ABI 1: every right up to MAKE_SYM
	if abi >= 2 {
		r |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		r |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		r |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return r
}

// llRulesetAttr is struct landlock_ruleset_attr up to ABI 6; older kernels
// take a prefix of it.
type llRulesetAttr struct {
	handledFS, handledNet, scoped uint64
}

// llPathBeneath is struct landlock_path_beneath_attr (packed: 12 bytes,
// which is what the kernel reads).
type llPathBeneath struct {
	allowed  uint64
	parentFD int32
	_        int32
}

// llReadRights are what a task may do in the work dir outside its own
// directories: read and run, never change.
const llReadRights = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_EXECUTE

// landlockRestrict confines the calling (locked) thread, and the processes
// it starts, so that secrets cannot be opened: every file hierarchy is
// granted except the path from / down to secrets, where only the siblings
// of each step are. The directories on the path stay searchable (Landlock
// does not govern path walks) but cannot be listed or written. Beneath
// workDir the siblings are granted read and execute only, and the task's
// writable directories everything, so a task cannot change the staging
// cache, its own attempt's log copies or other attempts. From ABI 6 the
// thread also cannot signal processes outside its domain (the agent);
// ptrace and /proc/<pid>/{environ,mem,fd} of the agent are refused by
// Landlock at every ABI.
func landlockRestrict(abi int, secrets, workDir string, writable []string) error {
	real, err := filepath.EvalSymlinks(secrets)
	if errors.Is(err, os.ErrNotExist) {
		real, err = secrets, nil // created later: hide the path anyway
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIsolation, err)
	}
	handled := llHandled(abi)
	attr := llRulesetAttr{handledFS: handled}
	size := unsafe.Sizeof(attr.handledFS)
	switch {
	case abi >= 6:
		attr.scoped = unix.LANDLOCK_SCOPE_SIGNAL
		size = unsafe.Sizeof(attr)
	case abi >= 4:
		size = 2 * unsafe.Sizeof(attr.handledFS)
	}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return fmt.Errorf("%w: landlock_create_ruleset: %v", ErrIsolation, errno)
	}
	defer unix.Close(int(fd))
	dir := "/"
	for _, step := range strings.Split(strings.TrimPrefix(real, "/"), "/") {
		err := llGrantSiblings(int(fd), handled, dir, step, workDir)
		if errors.Is(err, os.ErrNotExist) {
			break // nothing beneath a missing directory to grant
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrIsolation, err)
		}
		dir = filepath.Join(dir, step)
	}
	for _, w := range writable {
		if err := llGrant(int(fd), w, handled); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %v", ErrIsolation, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: no_new_privs: %v", ErrIsolation, err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("%w: landlock_restrict_self: %v", ErrIsolation, errno)
	}
	return nil
}

// llGrantSiblings grants every right on every entry of dir except skip,
// and only llReadRights beneath workDir.
func llGrantSiblings(ruleset int, handled uint64, dir, skip, workDir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == skip {
			continue
		}
		p := filepath.Join(dir, name)
		rights := handled
		if workDir != "" && strings.HasPrefix(p, workDir+"/") {
			rights &= llReadRights
		}
		if err := llGrant(ruleset, p, rights); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// llGrant grants rights on the hierarchy at p (the file rights alone when
// p is not a directory). Symlinks need no rule: what they point to is
// checked where it is.
func llGrant(ruleset int, p string, rights uint64) error {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: p, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return nil
	case unix.S_IFDIR:
	default:
		rights &= llFileRights
	}
	rule := llPathBeneath{allowed: rights, parentFD: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&rule)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("landlock_add_rule %s: %w", p, errno)
	}
	return nil
}
