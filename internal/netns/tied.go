package netns

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartTied starts cmd so that the kernel sends it sig when this process
// dies, and not before, and returns a channel that gets cmd.Wait's result.
//
// The parent-death signal (Pdeathsig) follows the thread that forked the
// child, not the process, and a Go process ends threads while it lives: a
// goroutine that exits locked to its thread takes the thread along, as the
// agent's task isolation does on purpose (agent/runtime onFreshThread). A
// test running an agent beside its cluster saw both dockerds shut down the
// moment the agent started, about one run in three. So cmd is started and
// waited for on a goroutine locked to its thread until cmd exits, and that
// thread ends only with the process.
func StartTied(cmd *exec.Cmd, sig syscall.Signal) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	started, done := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // the child is gone: the thread may serve others
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}
