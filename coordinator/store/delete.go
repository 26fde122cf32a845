package store

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// DeleteJob removes a job's records (job, tasks and attempts) and its log
// segments, and returns how many bytes of logs it freed. The logs go first:
// a crash in between leaves the job's records, and deleting it again
// finishes the work. Deleting a job that does not exist does nothing.
// Callers make sure nothing writes the job's logs any more.
func (s *Store) DeleteJob(job string) (freed int64, err error) {
	if !validJobID(job) {
		return 0, fmt.Errorf("delete job %q: %w", job, ErrInvalidID)
	}
	s.segMu.Lock()
	for k := range s.segs {
		if k.job == job {
			delete(s.segs, k)
		}
	}
	delete(s.dirs, job)
	p := s.packs[job]
	delete(s.packs, job)
	delete(s.open, p)
	s.segMu.Unlock()
	if p != nil {
		_ = p.closeFile()
	}
	dir := filepath.Join(s.logDir, job)
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				freed += fi.Size()
			}
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("delete the logs of job %s: %w", job, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketJobs).Delete([]byte(job)); err != nil {
			return err
		}
		prefix := jobPrefix(job)
		for _, name := range [][]byte{bucketTasks, bucketAttempts} {
			b := tx.Bucket(name)
			var keys [][]byte
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete job %s: %w", job, err)
	}
	return freed, nil
}
