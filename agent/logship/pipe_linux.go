package logship

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// pipeBuf is the pipe buffer Copy asks for. A fast writer then runs ahead
// while the reader is busy or not scheduled, instead of blocking at the
// kernel's default 64 KiB, and each read takes more at once. It counts
// against the user's pipe-user-pages-soft (64 MiB by default) unless the
// agent runs as root; past that the kernel refuses and the pipe keeps its
// size.
const pipeBuf = 256 << 10

// growPipe enlarges r's buffer if r is a pipe; it is best effort.
func growPipe(r io.Reader) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeBuf)
		}
	})
}
