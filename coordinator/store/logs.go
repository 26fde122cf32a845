package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// LogEntry is one stored log batch.
type LogEntry struct {
	// Seq is the batch's sequence number within its attempt.
	Seq uint64
	// Stream is stdout or stderr.
	Stream cloudmlv1.LogStream
	// Data is one or more whole lines.
	Data []byte
}

// AppendLogs stores, in one transaction, the batches of one attempt that
// continue its acknowledged sequence: a batch with seq ≤ acked is a duplicate
// and skipped, one with seq == acked+1 is stored, and the first gap stops
// the run. It returns the new acknowledged sequence and how many batches it
// stored.
func (s *Store) AppendLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (acked uint64, stored int, err error) {
	ak := attemptKey(job, task, attempt)
	err = s.db.Update(func(tx *bolt.Tx) error {
		acks := tx.Bucket(bucketAcks)
		logs := tx.Bucket(bucketLogs)
		acked = decodeSeq(acks.Get(ak))
		start := acked
		for _, b := range batches {
			if b.GetSeq() <= acked {
				continue
			}
			if b.GetSeq() != acked+1 {
				break
			}
			val := make([]byte, 1+len(b.GetData()))
			val[0] = byte(b.GetStream())
			copy(val[1:], b.GetData())
			if err := logs.Put(logKey(job, task, attempt, b.GetSeq()), val); err != nil {
				return err
			}
			acked++
		}
		stored = int(acked - start)
		if stored == 0 {
			return nil
		}
		return acks.Put(ak, encodeSeq(acked))
	})
	if err != nil {
		return 0, 0, fmt.Errorf("append logs: %w", err)
	}
	return acked, stored, nil
}

// ReadLogs returns the stored batches of one attempt with seq > after, in
// order, stopping once about maxBytes of data were read (at least one batch).
func (s *Store) ReadLogs(job string, task, attempt int32, after uint64, maxBytes int) ([]LogEntry, error) {
	var out []LogEntry
	prefix := attemptKey(job, task, attempt)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		size := 0
		for k, v := c.Seek(logKey(job, task, attempt, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 || len(v) < 1 {
				continue
			}
			e := LogEntry{
				Seq:    binary.BigEndian.Uint64(k[len(prefix):]),
				Stream: cloudmlv1.LogStream(v[0]),
				Data:   bytes.Clone(v[1:]),
			}
			out = append(out, e)
			size += len(e.Data)
			if size >= maxBytes {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	return out, nil
}
