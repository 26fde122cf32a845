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

// nameSynced reports whether the attempt's log file name (its job's pack)
// was made durable by this store: its job directory is known, that
// directory and the logs directory were synced, and the pack waits for no
// name.
func nameSynced(s *Store, job string, task, attempt int32) (bool, string) {
	s.segMu.Lock()
	jd, seg := s.dirs[job], s.segs[segKey{job, task, attempt}]
	s.segMu.Unlock()
	switch {
	case jd == nil:
		return false, "the job's directory is not known"
	case seg == nil:
		return false, "no segment"
	}
	seg.p.mu.Lock()
	pending := seg.p.name
	seg.p.mu.Unlock()
	switch {
	case jd.names.synced == 0 || jd.names.synced < jd.names.made:
		return false, "the job's directory was not synced after the file was made"
	case s.logNames.synced < jd.ticket:
		return false, "the logs directory was not synced after the job's directory was made"
	case pending != 0:
		return false, "the segment still waits for its name"
	}
	return true, ""
}

func TestAcknowledgedLogsHaveTheirFileNameSynced(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "job-a", 0, 1, 1, batch(1, 10))
	if ok, why := nameSynced(s, "job-a", 0, 1); !ok {
		t.Errorf("after the first acknowledgement: %s", why)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened, the file is found, not made: a crashed run may have left
	// its name not durable, so the next acknowledgement syncs it again.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "job-a", 0, 1, 2, batch(2, 10))
	if ok, why := nameSynced(s, "job-a", 0, 1); !ok {
		t.Errorf("after the first acknowledgement since the restart: %s", why)
	}
}
