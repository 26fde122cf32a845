package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// ErrUser is wrapped when a task user cannot be resolved or used.
var ErrUser = errors.New("task user")

// User is the account a task runs as.
type User struct {
	// Name is the account's name ("nobody"), or its uid when it has none;
	// tasks get it as USER and LOGNAME.
	Name string
	// UID and GID are the ids the task runs with; it gets no supplementary
	// groups.
	UID, GID uint32
}

// String is "name (uid:gid)".
func (u User) String() string { return fmt.Sprintf("%s (%d:%d)", u.Name, u.UID, u.GID) }

// LookupUser resolves a user as --task-user takes it: a name, a uid, or
// uid:gid. A name or a bare uid takes its primary group from the account
// database; a uid without an account gets gid = uid.
func LookupUser(spec string) (User, error) {
	if spec == "" {
		return User{}, fmt.Errorf("%w: empty", ErrUser)
	}
	if uidS, gidS, ok := strings.Cut(spec, ":"); ok {
		uid, err1 := parseID(uidS)
		gid, err2 := parseID(gidS)
		if err1 != nil || err2 != nil {
			return User{}, fmt.Errorf("%w: %q is not uid:gid", ErrUser, spec)
		}
		name := uidS
		if u, err := user.LookupId(uidS); err == nil {
			name = u.Username
		}
		return User{Name: name, UID: uid, GID: gid}, nil
	}
	if uid, err := parseID(spec); err == nil {
		u, err := user.LookupId(spec)
		if err != nil {
			return User{Name: spec, UID: uid, GID: uid}, nil
		}
		return fromAccount(u)
	}
	u, err := user.Lookup(spec)
	if err != nil {
		return User{}, fmt.Errorf("%w: %v (give a uid or uid:gid instead)", ErrUser, err)
	}
	return fromAccount(u)
}

// CurrentUser is the account the agent runs as.
func CurrentUser() User {
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	name := strconv.Itoa(int(uid))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return User{Name: name, UID: uid, GID: gid}
}

func fromAccount(u *user.User) (User, error) {
	uid, err1 := parseID(u.Uid)
	gid, err2 := parseID(u.Gid)
	if err1 != nil || err2 != nil {
		return User{}, fmt.Errorf("%w: account %s has ids %s:%s", ErrUser, u.Username, u.Uid, u.Gid)
	}
	return User{Name: u.Username, UID: uid, GID: gid}, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 { // -1 means "unchanged" to setuid
		return 0, fmt.Errorf("bad id %q", s)
	}
	return uint32(n), nil
}
