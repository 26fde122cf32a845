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

// ReadLogs returns the written batches of one attempt with seq > after, in
// order, stopping once about maxBytes of data were read (at least one batch).
// It reads up to the written seq, which may be ahead of the durable one
// (see WriteLogs).
func (s *Store) ReadLogs(job string, task, attempt int32, after uint64, maxBytes int) ([]LogEntry, error) {
	entries, _, err := s.ReadLogsInto(nil, job, task, attempt, after, maxBytes)
	return entries, err
}

// ReadLogsInto is ReadLogs reading into buf when it is large enough (else
// into a new buffer), so that a reader done with the entries before its
// next read can reuse one buffer. The entries' data points into the
// buffer it returns.
func (s *Store) ReadLogsInto(buf []byte, job string, task, attempt int32, after uint64, maxBytes int) ([]LogEntry, []byte, error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return nil, buf, fmt.Errorf("read logs: %w", err)
	}
	seg.mu.Lock()
	if after >= seg.written {
		seg.mu.Unlock()
		return nil, buf, nil
	}
	start := seg.offs[after]
	end, data := start, 0
	for i := after; i < seg.written; i++ {
		end = seg.size
		if i+1 < seg.written {
			end = seg.offs[i+1]
		}
		data += int(end-seg.offs[i]) - recordHeader
		if data >= maxBytes {
			break
		}
	}
	seg.mu.Unlock()

	if int64(cap(buf)) >= end-start {
		buf = buf[:end-start]
	} else {
		buf = make([]byte, end-start)
	}
	if err := readAt(seg.path, buf, start); err != nil {
		return nil, buf, fmt.Errorf("read logs: %w", err)
	}
	var out []LogEntry
	for p := 0; p+recordHeader <= len(buf); {
		n := int(binary.BigEndian.Uint32(buf[p+9:]))
		if p+recordHeader+n > len(buf) {
			return nil, buf, fmt.Errorf("read logs: %s: record at %d overruns the index", seg.path, start+int64(p))
		}
		out = append(out, LogEntry{
			Seq:    binary.BigEndian.Uint64(buf[p:]),
			Stream: cloudmlv1.LogStream(buf[p+8] &^ cappedFlag),
			Data:   buf[p+recordHeader : p+recordHeader+n : p+recordHeader+n],
		})
		p += recordHeader + n
	}
	return out, buf, nil
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

// AckedSeq returns the highest log seq stored durably for the attempt, 0
// if none; for a capped log, the highest acknowledged without being stored
// if that is higher. An id that cannot have logs (see ErrInvalidID) has
// none.
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
	return seg.ackedSeq(), nil
}

// LogsCapped reports whether the attempt's log reached Options.MaxLogBytes:
// its later batches are acknowledged without being stored.
func (s *Store) LogsCapped(job string, task, attempt int32) (bool, error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return false, err
	}
	seg.mu.Lock()
	defer seg.mu.Unlock()
	return seg.capped, nil
}

// LogBytes counts the data bytes of each stream in the attempt's batches
// with seq ≤ upTo (clamped to the written seq), indexed by stream. It reads
// only the records' headers. An agent that attaches to a running task skips
// this much of each stream (see StreamLogsResponse).
func (s *Store) LogBytes(job string, task, attempt int32, upTo uint64) (map[cloudmlv1.LogStream]uint64, error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return nil, fmt.Errorf("count logs: %w", err)
	}
	seg.mu.Lock()
	offs := seg.offs[:min(upTo, seg.written)]
	seg.mu.Unlock()
	out := map[cloudmlv1.LogStream]uint64{}
	if len(offs) == 0 {
		return out, nil
	}
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, fmt.Errorf("count logs: %w", err)
	}
	defer f.Close()
	var hdr [recordHeader]byte
	for _, off := range offs {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, fmt.Errorf("count logs: %s at %d: %w", seg.path, off, err)
		}
		out[cloudmlv1.LogStream(hdr[8]&^cappedFlag)] += uint64(binary.BigEndian.Uint32(hdr[9:]))
	}
	return out, nil
}
