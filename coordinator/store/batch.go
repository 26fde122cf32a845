package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Batch is a set of Changes encoded, ready to write. Encoding copies the
// records, so the caller may change them again once Encode returns: a
// group committer encodes under its caller's lock and writes later,
// outside it.
type Batch struct {
	ops []op
}

// op puts val at key in bucket, or deletes key when val is nil.
type op struct {
	bucket []byte
	key    []byte
	val    []byte
}

// Len is the number of records the batch writes or deletes.
func (b *Batch) Len() int { return len(b.ops) }

// Encode encodes every record of c.
func Encode(c *Changes) (*Batch, error) {
	b := &Batch{ops: make([]op, 0, len(c.Nodes)+len(c.Jobs)+len(c.Tasks)+len(c.Attempts))}
	var err error
	put := func(bucket, key []byte, v any) {
		if err != nil {
			return
		}
		var data []byte
		if data, err = json.Marshal(v); err != nil {
			err = fmt.Errorf("encode %s %q: %w", bucket, key, err)
			return
		}
		b.ops = append(b.ops, op{bucket, key, data})
	}
	for _, n := range c.Nodes {
		put(bucketNodes, []byte(n.ID), n)
	}
	for _, j := range c.Jobs {
		put(bucketJobs, []byte(j.ID), j)
	}
	for _, t := range c.Tasks {
		if data, ok := appendTask(make([]byte, 0, 160), t); ok {
			b.ops = append(b.ops, op{bucketTasks, taskKey(t.JobID, t.Index), data})
			continue
		}
		put(bucketTasks, taskKey(t.JobID, t.Index), t)
	}
	for _, a := range c.Attempts {
		if data, ok := appendAttempt(make([]byte, 0, 256), a); ok {
			b.ops = append(b.ops, op{bucketAttempts, attemptKey(a.JobID, a.Task, a.Attempt), data})
			continue
		}
		put(bucketAttempts, attemptKey(a.JobID, a.Task, a.Attempt), a)
	}
	for _, t := range c.Tokens {
		put(bucketTokens, []byte(t.ID), t)
	}
	for _, cr := range c.Credentials {
		put(bucketCreds, []byte(cr.Name), cr)
	}
	for _, m := range c.Machines {
		put(bucketMachines, []byte(m.ID), m)
	}
	for _, r := range c.MachineRequests {
		put(bucketRequests, []byte(r.ID), r)
	}
	for _, p := range c.Pools {
		put(bucketPools, []byte(p.Name), p)
	}
	if err != nil {
		return nil, err
	}
	for _, drop := range []struct {
		bucket []byte
		keys   []string
	}{{bucketMachines, c.DropMachines}, {bucketRequests, c.DropMachineRequests}, {bucketPools, c.DropPools}} {
		for _, k := range drop.keys {
			b.ops = append(b.ops, op{drop.bucket, []byte(k), nil})
		}
	}
	return b, nil
}

// Fault points: where Options.Fault is asked whether to fail a Write.
const (
	// FaultWrite is before a transaction's first write.
	FaultWrite = "write"
	// FaultSync is after its writes, where its commit writes the file and
	// syncs it.
	FaultSync = "sync"
	// FaultLogSync is the fsync of a job's log file (SyncLogs,
	// and the move-in of an older store's per-attempt files).
	FaultLogSync = "log sync"
)

// ErrInjected is the error tests inject with Options.Fault.
var ErrInjected = errors.New("injected store fault")

// Write writes the batches in one transaction (one fsync), in order: of
// two writes of one key, the later batch's wins. Nothing is written when
// it fails.
func (s *Store) Write(batches ...*Batch) error {
	var ops []op
	for _, b := range batches {
		ops = append(ops, b.ops...)
	}
	if len(ops) == 0 {
		return nil
	}
	sortOps(ops)
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.fault(FaultWrite); err != nil {
			return err
		}
		for i, o := range ops {
			if i+1 < len(ops) && bytes.Equal(o.bucket, ops[i+1].bucket) && bytes.Equal(o.key, ops[i+1].key) {
				continue // a later batch writes this key again
			}
			b := tx.Bucket(o.bucket)
			var err error
			if o.val == nil {
				err = b.Delete(o.key)
			} else {
				err = b.Put(o.key, o.val)
			}
			if err != nil {
				return fmt.Errorf("%s %q: %w", o.bucket, o.key, err)
			}
		}
		return s.fault(FaultSync)
	})
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// Probe writes and syncs one small record, to learn whether the store
// works again after a failed Write.
func (s *Store) Probe() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.fault(FaultWrite); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put([]byte("probe"), []byte{1}); err != nil {
			return err
		}
		return s.fault(FaultSync)
	})
	if err != nil {
		return fmt.Errorf("probe state: %w", err)
	}
	return nil
}

// sortOps puts ops in bucket and key order, so bbolt appends instead of
// inserting into the middle of a page (which copied the page's tail on
// each put: 18 s for a 100,000-task commit in random order). The sort is
// stable, so the last of a key's writes is still applied last.
func sortOps(ops []op) {
	slices.SortStableFunc(ops, func(a, b op) int {
		if c := bytes.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		return bytes.Compare(a.key, b.key)
	})
}

func (s *Store) fault(point string) error {
	if s.opts.Fault == nil {
		return nil
	}
	if err := s.opts.Fault(point); err != nil {
		return fmt.Errorf("%s: %w", point, err)
	}
	return nil
}
