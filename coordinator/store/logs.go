package store

import (
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
	last, size, data := after, int64(0), 0
	for last < seg.written {
		n := seg.ends[last] - seg.offs[last]
		size += n
		data += int(n) - packHeader
		last++
		if data >= maxBytes {
			break
		}
	}
	offs, ends := seg.offs[after:last], seg.ends[after:last]
	seg.mu.Unlock()

	if int64(cap(buf)) >= size {
		buf = buf[:size]
	} else {
		buf = make([]byte, size)
	}
	if err := readRecords(seg.p.path, buf, offs, ends); err != nil {
		return nil, buf, fmt.Errorf("read logs: %w", err)
	}
	out := make([]LogEntry, 0, len(offs))
	for p := 0; p+packHeader <= len(buf); {
		h := parseHeader(buf[p:])
		end := p + packHeader + int(h.n)
		if end > len(buf) {
			return nil, buf, fmt.Errorf("read logs: %s: record at %d overruns the index", seg.p.path, p)
		}
		out = append(out, LogEntry{Seq: h.seq, Stream: cloudmlv1.LogStream(h.stream &^ cappedFlag), Data: buf[p+packHeader : end : end]})
		p = end
	}
	return out, buf, nil
}

// readRecords reads the records at [offs[i], ends[i]) of the file at path
// one after the other into buf, in one read per run of adjacent records.
func readRecords(path string, buf []byte, offs, ends []int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	at := 0
	for i := 0; i < len(offs); {
		j := i + 1
		for j < len(offs) && offs[j] == ends[j-1] {
			j++
		}
		n := int(ends[j-1] - offs[i])
		if _, err := f.ReadAt(buf[at:at+n], offs[i]); err != nil {
			return err
		}
		at += n
		i = j
	}
	return nil
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
	f, err := os.Open(seg.p.path)
	if err != nil {
		return nil, fmt.Errorf("count logs: %w", err)
	}
	defer f.Close()
	var hdr [packHeader]byte
	for _, off := range offs {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, fmt.Errorf("count logs: %s at %d: %w", seg.p.path, off, err)
		}
		h := parseHeader(hdr[:])
		out[cloudmlv1.LogStream(h.stream&^cappedFlag)] += uint64(h.n)
	}
	return out, nil
}
