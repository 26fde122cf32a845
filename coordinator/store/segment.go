package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
)

// recordHeader is a log record's header: seq (8B BE), stream (1B), data
// length (4B BE).
const recordHeader = 13

// cappedFlag marks the stream byte of the record that ends a capped log:
// it holds the lines that fitted and the cap's note (see WriteLogs).
const cappedFlag = 0x80

// scanChunk is how much of a segment file one read takes while scanning.
const scanChunk = 1 << 20

// ErrInvalidID means a job id, task or attempt cannot name a log file.
var ErrInvalidID = errors.New("invalid log id")

// segKey names one attempt's log segment.
type segKey struct {
	job           string
	task, attempt int32
}

// segment is one attempt's append-only log file and its in-memory index.
type segment struct {
	path   string
	loaded atomic.Bool
	// wmu serialises writes, the first load and a rollback; it is held
	// across a write but not across an fsync.
	wmu     sync.Mutex
	created bool // the file and its directories are known to exist (wmu)
	// found is set when load found the file: a run that crashed may have
	// left its name not durable, so the first write syncs it too (wmu).
	found bool
	// smu serialises syncs; it is held across the fsync.
	smu sync.Mutex
	// mu guards the fields below; it is held only briefly.
	mu sync.Mutex
	// written is the highest seq written to the file (readers see up to
	// it); acked ≤ written is the highest seq known to be on disk.
	written, acked uint64
	size           int64
	offs           []int64 // offs[i] is the offset of the record with seq i+1
	// capped is set once the record that ends a capped log is written (it
	// is then the last one); skipped is the highest seq acknowledged since
	// without being stored. skipped is not kept: after a restart any seq
	// is acknowledged again.
	capped  bool
	skipped uint64
	// dir and name are the job's directory and the ticket of the file's
	// name in it while the name may not be durable yet (name 0 after).
	dir  *jobDir
	name uint64
}

// ackedSeq is the seq to acknowledge: the durable one, or once the capped
// log's last record is durable, every seq offered since. Callers hold mu.
func (seg *segment) ackedSeq() uint64 {
	if seg.capped && seg.acked == seg.written {
		return max(seg.acked, seg.skipped)
	}
	return seg.acked
}

// validJobID reports whether a job id is safe as a directory name: it starts
// with [a-z0-9] and goes on with [a-z0-9._-], so it is never "." or "..".
func validJobID(job string) bool {
	if job == "" || len(job) > 128 {
		return false
	}
	for i := 0; i < len(job); i++ {
		c := job[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '-' || c == '.' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// segment returns the attempt's segment, scanning its file the first time.
func (s *Store) segment(job string, task, attempt int32) (*segment, error) {
	if !validJobID(job) || task < 0 || attempt < 0 {
		return nil, fmt.Errorf("job %q task %d attempt %d: %w", job, task, attempt, ErrInvalidID)
	}
	k := segKey{job, task, attempt}
	s.segMu.Lock()
	seg := s.segs[k]
	if seg == nil {
		name := strconv.Itoa(int(task)) + "-" + strconv.Itoa(int(attempt)) + ".log"
		seg = &segment{path: filepath.Join(s.logDir, job, name)}
		if jd := s.dirs[k.job]; jd != nil && jd.fresh {
			// This process made the job's directory and holds a segment
			// for every file it made in it since (DeleteJob forgets both
			// together): this attempt has no file to scan. At 1,000 nodes
			// the open that found none was 0.18 s of the coordinator's
			// CPU per 10,000 attempts.
			seg.loaded.Store(true)
		}
		s.segs[k] = seg
	}
	s.segMu.Unlock()
	if seg.loaded.Load() {
		return seg, nil
	}
	seg.wmu.Lock()
	defer seg.wmu.Unlock()
	if seg.loaded.Load() {
		return seg, nil
	}
	if err := seg.load(); err != nil {
		return nil, fmt.Errorf("load log %s: %w", seg.path, err)
	}
	seg.loaded.Store(true)
	return seg, nil
}

// load rebuilds acked and the index from the file, truncating a torn tail
// (a partial or inconsistent record left by a crash). Callers hold wmu.
func (seg *segment) load() error {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	fileSize := fi.Size()
	var acked uint64
	var offs []int64
	var lastStream byte
	off := int64(0) // start of the next record
	buf := make([]byte, scanChunk)
scan:
	for off < fileSize {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		chunk := buf[:n]
		p := 0
		for p+recordHeader <= len(chunk) {
			seq := binary.BigEndian.Uint64(chunk[p:])
			end := off + int64(p) + recordHeader + int64(binary.BigEndian.Uint32(chunk[p+9:]))
			if seq != acked+1 || end > fileSize {
				off += int64(p) // the torn tail starts here
				break scan
			}
			offs = append(offs, off+int64(p))
			acked, lastStream = seq, chunk[p+8]
			if end > off+int64(len(chunk)) {
				off = end // the data runs past this chunk: read on after it
				continue scan
			}
			p = int(end - off)
		}
		if p == 0 {
			break // a header cut short by the end of the file
		}
		off += int64(p)
	}
	if off < fileSize {
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	seg.created, seg.found = true, true
	seg.mu.Lock()
	seg.written, seg.acked, seg.size, seg.offs = acked, acked, off, offs
	seg.capped = lastStream&cappedFlag != 0
	seg.mu.Unlock()
	return nil
}

// openAppend opens the file for writing, creating it the first time. jd,
// given while the file's name may not be durable (created here, or found
// at load), is its job's directory: SyncLogs makes the name durable
// before it acknowledges anything (Store.syncName). Callers hold wmu.
func (seg *segment) openAppend(jd *jobDir) (*os.File, error) {
	flags := os.O_WRONLY
	if !seg.created {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(seg.path, flags, 0o600)
	if err != nil || jd == nil {
		return f, err
	}
	ticket := jd.names.created()
	seg.mu.Lock()
	seg.dir, seg.name = jd, ticket
	seg.mu.Unlock()
	seg.created, seg.found = true, false
	return f, nil
}

// appendRecord appends one encoded record to buf.
func appendRecord(buf []byte, seq uint64, stream byte, data []byte) []byte {
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = append(buf, stream)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...)
}
