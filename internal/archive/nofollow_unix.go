//go:build unix

package archive

import "syscall"

// noFollow makes opening the final path component fail if it is a symlink.
const noFollow = syscall.O_NOFOLLOW
