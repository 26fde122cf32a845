package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// packHeader is a log record's header in a job's pack: task (4B BE),
// attempt (4B BE), seq (8B BE), stream (1B), data length (4B BE).
const packHeader = 21

// recordHeader is what a record's header counts towards an attempt's
// Options.MaxLogBytes: the 13 bytes (seq, stream, length) of the one-file-
// per-attempt layout this store had before packs, so that a limit means
// what it meant.
const recordHeader = 13

// PackName is the name of a job's log file in its directory under logs/.
const PackName = "attempts.log"

// cappedFlag marks the stream byte of the record that ends a capped log:
// it holds the lines that fitted and the cap's note (see WriteLogs).
const cappedFlag = 0x80

// scanChunk is how much of a log file one read takes while scanning.
const scanChunk = 1 << 20

// ErrInvalidID means a job id, task or attempt cannot name a log file.
var ErrInvalidID = errors.New("invalid log id")

// segKey names one attempt's log segment.
type segKey struct {
	job           string
	task, attempt int32
}

// pack is one job's log file, logs/<job>/attempts.log: the records of every
// attempt of the job, each appended whole in the order written. One file
// per job instead of one per attempt: at 1,000 nodes a file created and
// synced per attempt held the coordinator's cores in open and fsync calls
// (41-50 us of CPU per attempt against 7-9 with one shared file, in a
// standalone test), and the attempts of a job written together now share
// one fsync.
type pack struct {
	path string
	// ready is closed once the first load ended; loadErr is its failure.
	ready   chan struct{}
	loadErr error
	// wmu serialises appends and rollbacks; it is held across a write but
	// not across an fsync.
	wmu     sync.Mutex
	size    int64    // where the next record goes (wmu)
	created bool     // the file is known to exist (wmu)
	f       *os.File // the file, open for appends and syncs (wmu; closeFile)
	used    uint64   // when it was last written (Store.segMu; Store.keepOpen)
	// found is set when load found the file: a run that crashed may have
	// left its name not durable, so the first write syncs it too (wmu).
	found bool
	// smu serialises fsyncs; it is held across the fsync.
	smu sync.Mutex
	// mu guards the fields below; it is held only briefly.
	mu     sync.Mutex
	synced int64      // every record ending at or before it is durable
	segs   []*segment // the attempts with a segment in this pack
	// dir and name are the job's directory and the ticket of the file's
	// name in it while the name may not be durable yet (name 0 after).
	dir  *jobDir
	name uint64
}

// segment is one attempt's records in its job's pack and their index.
type segment struct {
	p *pack
	// wmu serialises the attempt's writes (its seqs follow one another).
	wmu sync.Mutex
	// mu guards the fields below; it is held only briefly. Lock order:
	// pack.wmu, then mu.
	mu sync.Mutex
	// written is the highest seq written (readers see up to it); acked ≤
	// written is the highest seq known to be on disk.
	written, acked uint64
	bytes          int64   // data and recordHeader per record, for MaxLogBytes
	offs, ends     []int64 // record seq i+1 is at [offs[i], ends[i]) of the pack
	// capped is set once the record that ends a capped log is written (it
	// is then the last one); skipped is the highest seq acknowledged since
	// without being stored. skipped is not kept: after a restart any seq
	// is acknowledged again.
	capped  bool
	skipped uint64
}

// ackedSeq is the seq to acknowledge: the durable one, or once the capped
// log's last record is durable, every seq offered since. Callers hold mu.
func (seg *segment) ackedSeq() uint64 {
	if seg.capped && seg.acked == seg.written {
		return max(seg.acked, seg.skipped)
	}
	return seg.acked
}

// lastEnd is where the segment's last record ends in the pack, 0 with
// none. Callers hold mu.
func (seg *segment) lastEnd() int64 {
	if len(seg.ends) == 0 {
		return 0
	}
	return seg.ends[len(seg.ends)-1]
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

// segment returns the attempt's segment, loading its job's pack the first
// time.
func (s *Store) segment(job string, task, attempt int32) (*segment, error) {
	if !validJobID(job) || task < 0 || attempt < 0 {
		return nil, fmt.Errorf("job %q task %d attempt %d: %w", job, task, attempt, ErrInvalidID)
	}
	p, err := s.pack(job)
	if err != nil {
		return nil, err
	}
	k := segKey{job, task, attempt}
	s.segMu.Lock()
	defer s.segMu.Unlock()
	seg := s.segs[k]
	if seg == nil {
		seg = &segment{p: p}
		s.segs[k] = seg
		p.mu.Lock()
		p.segs = append(p.segs, seg)
		p.mu.Unlock()
	}
	return seg, nil
}

// pack returns the job's pack, scanning its file the first time (with
// the segments of every attempt in it).
func (s *Store) pack(job string) (*pack, error) {
	s.segMu.Lock()
	p := s.packs[job]
	if p != nil {
		s.segMu.Unlock()
		<-p.ready
		if p.loadErr != nil {
			return nil, p.loadErr
		}
		return p, nil
	}
	p = &pack{path: filepath.Join(s.logDir, job, PackName), ready: make(chan struct{})}
	s.packs[job] = p
	s.segMu.Unlock()
	defer close(p.ready)
	segs, err := p.load(filepath.Join(s.logDir, job), s.syncLog)
	if err != nil {
		p.loadErr = fmt.Errorf("load logs of job %s: %w", job, err)
		s.segMu.Lock()
		delete(s.packs, job)
		s.segMu.Unlock()
		return nil, p.loadErr
	}
	s.segMu.Lock()
	for k, seg := range segs {
		s.segs[segKey{job, k.task, k.attempt}] = seg
	}
	s.segMu.Unlock()
	return p, nil
}

// legacyName matches the per-attempt log files of stores before packs.
var legacyName = regexp.MustCompile(`^([0-9]+)-([0-9]+)\.log$`)

// load rebuilds the pack's segments from its file, cutting a torn tail (a
// partial or inconsistent record left by a crash), then moves in the
// per-attempt files an older store left in dir. Nothing else uses the
// pack yet.
func (p *pack) load(dir string, sync func(path string, f *os.File) error) (map[segKey]*segment, error) {
	segs := map[segKey]*segment{}
	f, err := os.OpenFile(p.path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		defer f.Close()
		if p.size, err = p.scan(f, segs); err != nil {
			return nil, err
		}
		// A run that crashed may have left the file's name not durable:
		// the first sync makes it so (Store.syncName, from the first write).
		p.created, p.found = true, true
	}
	if err := p.adoptLegacy(dir, segs, sync); err != nil {
		return nil, err
	}
	p.synced = p.size
	for _, seg := range segs {
		p.segs = append(p.segs, seg)
	}
	return segs, nil
}

// scan indexes f's records into segs and cuts a torn tail; it returns
// where the last whole record ends.
func (p *pack) scan(f *os.File, segs map[segKey]*segment) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	fileSize := fi.Size()
	off := int64(0) // start of the next record
	buf := make([]byte, scanChunk)
scan:
	for off < fileSize {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		chunk := buf[:n]
		p0 := 0
		for p0+packHeader <= len(chunk) {
			h := parseHeader(chunk[p0:])
			start := off + int64(p0)
			end := start + packHeader + h.n
			k := segKey{task: h.task, attempt: h.attempt}
			seg := segs[k]
			if seg == nil {
				seg = &segment{p: p}
			}
			if h.task < 0 || h.attempt < 0 || h.seq != seg.written+1 || end > fileSize {
				off = start // the torn tail starts here
				break scan
			}
			segs[k] = seg
			seg.index(start, end, h.seq, h.stream)
			if end > off+int64(len(chunk)) {
				off = end // the data runs past this chunk: read on after it
				continue scan
			}
			p0 = int(end - off)
		}
		if p0 == 0 {
			break // a header cut short by the end of the file
		}
		off += int64(p0)
	}
	if off < fileSize {
		if err := f.Truncate(off); err != nil {
			return 0, fmt.Errorf("truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// index adds the record of seq that [start, end) of the pack holds.
func (seg *segment) index(start, end int64, seq uint64, stream byte) {
	seg.offs, seg.ends = append(seg.offs, start), append(seg.ends, end)
	seg.written, seg.acked = seq, seq
	seg.bytes += recordHeader + end - start - packHeader
	seg.capped = stream&cappedFlag != 0
}

// adoptLegacy moves into the pack the per-attempt files in dir (the layout
// before packs: <task>-<attempt>.log, records of seq, stream and length):
// it appends each file's records that continue its attempt's sequence in
// segs (a crash during an earlier move may have appended some already),
// makes the pack and its name durable, indexes the records, then removes
// the files. Callers have scanned the pack into segs.
func (p *pack) adoptLegacy(dir string, segs map[segKey]*segment, sync func(path string, f *os.File) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var legacy []string
	for _, e := range entries {
		if legacyName.MatchString(e.Name()) && e.Type().IsRegular() {
			legacy = append(legacy, e.Name())
		}
	}
	if len(legacy) == 0 {
		return nil
	}
	sort.Strings(legacy)
	var out []byte
	for _, name := range legacy {
		m := legacyName.FindStringSubmatch(name)
		task, _ := strconv.ParseInt(m[1], 10, 32)
		attempt, _ := strconv.ParseInt(m[2], 10, 32)
		k := segKey{task: int32(task), attempt: int32(attempt)}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		seg := segs[k]
		if seg == nil {
			seg = &segment{p: p}
			segs[k] = seg
		}
		for off, want := 0, uint64(1); off+recordHeader <= len(data); want++ {
			seq, stream := binary.BigEndian.Uint64(data[off:]), data[off+8]
			n := int(binary.BigEndian.Uint32(data[off+9:]))
			if seq != want || off+recordHeader+n > len(data) {
				break // a torn tail: dropped, as a load dropped it
			}
			if seq == seg.written+1 {
				start := p.size + int64(len(out))
				out = appendPackRecord(out, k.task, k.attempt, seq, stream, data[off+recordHeader:off+recordHeader+n])
				seg.index(start, p.size+int64(len(out)), seq, stream)
			}
			off += recordHeader + n
		}
		if seg.written == 0 {
			delete(segs, k) // an empty file
		}
	}
	if len(out) > 0 {
		f, err := os.OpenFile(p.path, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		if _, err = f.WriteAt(out, p.size); err == nil {
			err = sync(p.path, f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = atomicfile.SyncDir(dir) // the pack's name before the old names go
		}
		if err != nil {
			return fmt.Errorf("move the per-attempt log files into %s: %w", PackName, err)
		}
		p.size += int64(len(out))
		p.created, p.found = true, true
	}
	for _, name := range legacy {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// closeFile closes the file held open for appends and syncs, if it is.
// It waits for the sync and the append in progress, which use it.
func (p *pack) closeFile() error {
	p.smu.Lock()
	defer p.smu.Unlock()
	p.wmu.Lock()
	f := p.f
	p.f = nil
	p.wmu.Unlock()
	if f == nil {
		return nil
	}
	return f.Close()
}

// openAppend opens the pack for writing, creating it the first time, or
// returns the file it opened before and has not closed (closeFile). jd,
// given while the file's name may not be durable (created here, or found
// at load), is its job's directory: SyncLogs makes the name durable
// before it acknowledges anything (Store.syncName). Callers hold wmu.
func (p *pack) openAppend(jd *jobDir) (*os.File, error) {
	if p.f != nil {
		return p.f, nil
	}
	flags := os.O_WRONLY
	if !p.created {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(p.path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	p.f = f
	if jd == nil {
		return f, nil
	}
	ticket := jd.names.created()
	p.mu.Lock()
	p.dir, p.name = jd, ticket
	p.mu.Unlock()
	p.created, p.found = true, false
	return f, nil
}

// header is a pack record's header.
type header struct {
	task, attempt int32
	seq           uint64
	stream        byte  // with cappedFlag on the record that ends a capped log
	n             int64 // the data's length
}

// parseHeader reads the header at the start of b (packHeader bytes).
func parseHeader(b []byte) header {
	return header{
		task: int32(binary.BigEndian.Uint32(b)), attempt: int32(binary.BigEndian.Uint32(b[4:])),
		seq: binary.BigEndian.Uint64(b[8:]), stream: b[16], n: int64(binary.BigEndian.Uint32(b[17:])),
	}
}

// appendPackRecord appends one encoded record to buf.
func appendPackRecord(buf []byte, task, attempt int32, seq uint64, stream byte, data []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(task))
	buf = binary.BigEndian.AppendUint32(buf, uint32(attempt))
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = append(buf, stream)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...)
}
