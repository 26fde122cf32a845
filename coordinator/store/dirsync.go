package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// dirSync makes the names created in one directory durable in group
// commits: every job's log file is a new name in its job's directory,
// and one directory fsync covers every name made before it began. At
// 1,000 nodes each attempt made a file and synced its directory and the
// logs directory itself: two of its three fsyncs (make bench-cp).
type dirSync struct {
	path string
	mu   sync.Mutex
	cond *sync.Cond
	// made counts the names created in the directory; synced is the
	// highest count known durable; syncing is set while one caller syncs
	// on behalf of all.
	made, synced uint64
	syncing      bool
}

func newDirSync(path string) *dirSync {
	d := &dirSync{path: path}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// created records a name made in the directory (call it after the call
// that made the name returned) and returns the ticket to wait for.
func (d *dirSync) created() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.made++
	return d.made
}

// wait returns once the name with ticket t is durable: it fsyncs the
// directory itself unless a sync that began after t was taken is under
// way or done. A failed sync is returned to the callers that waited for
// it; the next wait tries again.
func (d *dirSync) wait(t uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.synced < t {
		if d.syncing {
			d.cond.Wait()
			continue
		}
		d.syncing = true
		target := d.made
		d.mu.Unlock()
		err := atomicfile.SyncDir(d.path)
		d.mu.Lock()
		d.syncing = false
		if err == nil {
			d.synced = max(d.synced, target)
		}
		d.cond.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// jobDir is one job's log directory: its own names' syncs, and the
// ticket of its name in the logs directory, which every file in it waits
// for too (0 once known durable).
type jobDir struct {
	names  *dirSync
	ticket uint64
}

// jobDirLocked returns the job's log directory, making it the first time this
// process writes the job's logs. Its name is synced once per process: a
// directory left by a crashed run may exist without being durable.
// Callers hold segMu.
func (s *Store) jobDirLocked(job string) (*jobDir, error) {
	if jd := s.dirs[job]; jd != nil {
		return jd, nil
	}
	path := filepath.Join(s.logDir, job)
	err := os.Mkdir(path, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, err
		}
	}
	jd := &jobDir{names: newDirSync(path), ticket: s.logNames.created()}
	s.dirs[job] = jd
	return jd, nil
}

// syncName makes a job's log file's name durable: the job's directory's
// name in the logs directory, then the file's in the job's.
func (s *Store) syncName(jd *jobDir, ticket uint64) error {
	if err := s.logNames.wait(jd.ticket); err != nil {
		return err
	}
	return jd.names.wait(ticket)
}
