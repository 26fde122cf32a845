package netns

import (
	"errors"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestStartTiedOutlivesTheCallersThread starts two children with a
// parent-death signal from a goroutine that then exits locked to its
// thread, which ends the thread: the one started plainly gets the signal
// (the kernel's rule, shown here so the test cannot pass vacuously), the
// one StartTied started does not.
var errMainThread = errors.New("on the main thread")

func TestStartTiedOutlivesTheCallersThread(t *testing.T) {
	plain, tied := exec.Command("sleep", "60"), exec.Command("sleep", "60")
	var tiedDone <-chan error
	errc := make(chan error, 1)
	for {
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == syscall.Getpid() {
				// The main thread is never ended, only parked: try another.
				runtime.UnlockOSThread()
				errc <- errMainThread
				return
			}
			// Never unlocked: the thread ends with this goroutine.
			plain.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := plain.Start(); err != nil {
				errc <- err
				return
			}
			var err error
			tiedDone, err = StartTied(tied, syscall.SIGKILL)
			errc <- err
		}()
		if err := <-errc; err != errMainThread {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	tiedEnded := false
	defer func() {
		_ = tied.Process.Kill()
		if !tiedEnded {
			<-tiedDone
		}
	}()
	plainDone := make(chan error, 1)
	go func() { plainDone <- plain.Wait() }()
	select {
	case err := <-plainDone:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the plain child ended with %v, want killed by its parent-death signal", err)
		}
	case <-time.After(30 * time.Second):
		_ = plain.Process.Kill()
		t.Fatal("the plain child outlived the thread that started it: the kernel's rule did not show, so this test proves nothing")
	}
	select {
	case err := <-tiedDone:
		tiedEnded = true
		t.Fatalf("the child StartTied started ended with its caller's thread: %v", err)
	default:
	}
	if err := tied.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the child StartTied started is gone: %v", err)
	}
}
