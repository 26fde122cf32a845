package store

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestDirSyncFailureIsReturnedAndRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job")
	d := newDirSync(path)
	if err := d.wait(0); err != nil {
		t.Fatalf("wait(0) = %v, want nil: nothing to sync", err)
	}
	ticket := d.created()
	if err := d.wait(ticket); err == nil {
		t.Fatal("wait on a directory that does not exist = nil, want its error")
	}
	if d.synced != 0 {
		t.Fatalf("synced = %d after a failed sync, want 0", d.synced)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(ticket); err != nil {
		t.Fatalf("wait after the directory exists = %v, want nil", err)
	}
	if d.synced != ticket {
		t.Fatalf("synced = %d, want %d", d.synced, ticket)
	}
}

func TestDirSyncCoversEveryNameMadeBeforeIt(t *testing.T) {
	d := newDirSync(t.TempDir())
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- d.wait(d.created())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d.made != n || d.synced != n || d.syncing {
		t.Fatalf("made %d, synced %d, syncing %v; want %d, %d, false", d.made, d.synced, d.syncing, n, n)
	}
}

func TestDeleteJobForgetsItsDirectory(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "job-a", 0, 1, 1, batch(1, 10))
	if _, err := s.DeleteJob("job-a"); err != nil {
		t.Fatal(err)
	}
	// The job's directory is gone: writing its logs again makes it anew
	// rather than syncing a directory that no longer exists.
	mustAppend(t, s, "job-a", 0, 1, 1, batch(1, 10))
}
