package store

import (
	"encoding/binary"
	"fmt"
	"os"

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

// AppendLogs stores the batches of one attempt that continue its
// acknowledged sequence: a batch with seq ≤ acked is a duplicate and
// skipped, one with seq == acked+1 is stored, and the first gap stops the
// run. The stored batches are written with one write and made durable
// before AppendLogs returns the new acknowledged sequence and how many
// batches it stored.
func (s *Store) AppendLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (acked uint64, stored int, err error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, 0, fmt.Errorf("append logs: %w", err)
	}
	seg.wmu.Lock()
	defer seg.wmu.Unlock()
	seg.mu.Lock()
	acked, size := seg.acked, seg.size
	seg.mu.Unlock()

	run := continuing(batches, acked)
	if len(run) == 0 {
		return acked, 0, nil
	}
	total := 0
	for _, b := range run {
		total += recordHeader + len(b.GetData())
	}
	buf := make([]byte, 0, total)
	offs := make([]int64, len(run))
	for i, b := range run {
		offs[i] = size + int64(len(buf))
		buf = appendRecord(buf, b.GetSeq(), byte(b.GetStream()), b.GetData())
	}
	if err := seg.write(buf, size); err != nil {
		return 0, 0, fmt.Errorf("append logs: %w", err)
	}
	seg.mu.Lock()
	seg.acked = acked + uint64(len(run))
	seg.size = size + int64(len(buf))
	seg.offs = append(seg.offs, offs...)
	acked = seg.acked
	seg.mu.Unlock()
	return acked, len(run), nil
}

// continuing returns the batches that extend acked one by one: duplicates
// (seq ≤ acked) are skipped and the first gap ends the run.
func continuing(batches []*cloudmlv1.LogBatch, acked uint64) []*cloudmlv1.LogBatch {
	var run []*cloudmlv1.LogBatch
	for _, b := range batches {
		switch {
		case b.GetSeq() <= acked:
		case b.GetSeq() == acked+1:
			run = append(run, b)
			acked++
		default:
			return run
		}
	}
	return run
}

// write writes buf at off and syncs it. On failure it cuts the file back to
// off, so the file never holds records the index does not. Callers hold wmu.
func (seg *segment) write(buf []byte, off int64) error {
	f, err := seg.openAppend()
	if err != nil {
		return err
	}
	_, err = f.WriteAt(buf, off)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Truncate(off) // best effort; a reload would cut a torn tail anyway
		f.Close()
		return err
	}
	return f.Close()
}

// ReadLogs returns the stored batches of one attempt with seq > after, in
// order, stopping once about maxBytes of data were read (at least one batch).
func (s *Store) ReadLogs(job string, task, attempt int32, after uint64, maxBytes int) ([]LogEntry, error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	seg.mu.Lock()
	if after >= seg.acked {
		seg.mu.Unlock()
		return nil, nil
	}
	start := seg.offs[after]
	end, data := start, 0
	for i := after; i < seg.acked; i++ {
		end = seg.size
		if i+1 < seg.acked {
			end = seg.offs[i+1]
		}
		data += int(end-seg.offs[i]) - recordHeader
		if data >= maxBytes {
			break
		}
	}
	seg.mu.Unlock()

	buf := make([]byte, end-start)
	if err := readAt(seg.path, buf, start); err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	var out []LogEntry
	for p := 0; p+recordHeader <= len(buf); {
		n := int(binary.BigEndian.Uint32(buf[p+9:]))
		if p+recordHeader+n > len(buf) {
			return nil, fmt.Errorf("read logs: %s: record at %d overruns the index", seg.path, start+int64(p))
		}
		out = append(out, LogEntry{
			Seq:    binary.BigEndian.Uint64(buf[p:]),
			Stream: cloudmlv1.LogStream(buf[p+8]),
			Data:   buf[p+recordHeader : p+recordHeader+n : p+recordHeader+n],
		})
		p += recordHeader + n
	}
	return out, nil
}

func readAt(path string, buf []byte, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, off)
	return err
}

// AckedSeq returns the highest log seq stored for the attempt, 0 if none.
// An id that cannot have logs (see ErrInvalidID) has none.
func (s *Store) AckedSeq(job string, task, attempt int32) (uint64, error) {
	if !validJobID(job) || task < 0 || attempt < 0 {
		return 0, nil
	}
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, err
	}
	seg.mu.Lock()
	defer seg.mu.Unlock()
	return seg.acked, nil
}
