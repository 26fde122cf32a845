package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// WriteLogs writes the batches of one attempt that continue its written
// sequence, with one write and no fsync: a batch with seq ≤ written is a
// duplicate and skipped, one with seq == written+1 is stored, and the
// first gap stops the run. Readers see the batches at once; they become
// durable (and count in AckedSeq) with the next SyncLogs. It returns the
// new written sequence and how many batches it stored.
//
// With Options.MaxLogBytes, the batch that would take the file past it is
// stored cut to its whole lines that fit, followed by Options.LogCapNote,
// and marked as the end of a capped log. Every later batch of the attempt
// is acknowledged (counted as written, and as durable once that record is)
// without being stored, whatever its seq, so that the writer ships on.
func (s *Store) WriteLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (written uint64, stored int, err error) {
	written, stored, p, err := s.writeLogs(job, task, attempt, batches)
	if p != nil {
		s.keepOpen(p) // with no lock held: it may close another pack's file
	}
	return written, stored, err
}

// writeLogs is WriteLogs but for keepOpen; p is the pack it wrote to, nil
// when it wrote nothing.
func (s *Store) writeLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (written uint64, stored int, p *pack, err error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("write logs: %w", err)
	}
	seg.wmu.Lock()
	defer seg.wmu.Unlock()
	seg.mu.Lock()
	written, size, capped := seg.written, seg.bytes, seg.capped
	seg.mu.Unlock()
	if capped {
		return seg.skip(batches), 0, nil, nil
	}

	run := continuing(batches, written)
	if len(run) == 0 {
		return written, 0, nil, nil
	}
	run, capped = s.capRun(run, size)
	p = seg.p
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var jd *jobDir
	if !p.created || p.found {
		s.segMu.Lock()
		jd, err = s.jobDirLocked(job)
		s.segMu.Unlock()
		if err != nil {
			return 0, 0, nil, fmt.Errorf("write logs: %w", err)
		}
	}
	offs, ends := make([]int64, len(run)), make([]int64, len(run))
	end, err := p.write(task, attempt, run, offs, ends, jd)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("write logs: %w", err)
	}
	p.size = end
	seg.mu.Lock()
	seg.written = written + uint64(len(run))
	for _, b := range run {
		seg.bytes += recordHeader + int64(len(b.GetData()))
	}
	seg.offs, seg.ends = append(seg.offs, offs...), append(seg.ends, ends...)
	seg.capped = capped
	written = seg.written
	seg.mu.Unlock()
	if capped {
		written = seg.skip(batches)
	}
	return written, len(run), p, nil
}

// capRun returns run as far as it fits in MaxLogBytes from size: when a
// batch does not, it is replaced by its whole lines that fit plus the
// cap's note, flagged, and capped is true.
func (s *Store) capRun(run []*cloudmlv1.LogBatch, size int64) (_ []*cloudmlv1.LogBatch, capped bool) {
	limit := s.opts.MaxLogBytes
	if limit <= 0 {
		return run, false
	}
	for i, b := range run {
		cost := int64(recordHeader + len(b.GetData()))
		if size+cost <= limit {
			size += cost
			continue
		}
		var data []byte
		if room := limit - size - recordHeader; room > 0 {
			kept := b.GetData()[:room]
			data = append(data, kept[:bytes.LastIndexByte(kept, '\n')+1]...)
		}
		data = append(data, s.opts.LogCapNote...)
		last := &cloudmlv1.LogBatch{Seq: b.GetSeq(), Stream: b.GetStream() | cappedFlag, Data: data}
		return append(run[:i:i], last), true
	}
	return run, false
}

// skip acknowledges the batches of a capped log without storing them and
// returns the sequence to report as written. Callers hold wmu.
func (seg *segment) skip(batches []*cloudmlv1.LogBatch) uint64 {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	for _, b := range batches {
		seg.skipped = max(seg.skipped, b.GetSeq())
	}
	return max(seg.written, seg.skipped)
}

// SyncLogs makes every batch of the attempt written so far durable with
// one fsync (a group commit of all the writes since the last one) and
// returns the durable, acknowledged sequence. If the fsync fails, the
// batches written since the last good one are dropped (the file is cut
// back), so the writer must send them again; readers that saw them see
// the same batches again under the same seqs.
//
// One fsync of the pack covers every attempt written before it began: a
// caller whose records end before what an earlier fsync covered does not
// sync again. It syncs through the file the appends hold open, by name
// when they closed it.
func (s *Store) SyncLogs(job string, task, attempt int32) (acked uint64, err error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, fmt.Errorf("sync logs: %w", err)
	}
	p := seg.p
	seg.mu.Lock()
	written, end := seg.written, seg.lastEnd()
	if written <= seg.acked {
		acked = seg.ackedSeq()
		seg.mu.Unlock()
		return acked, nil
	}
	seg.mu.Unlock()
	p.smu.Lock()
	p.mu.Lock()
	synced := p.synced
	p.mu.Unlock()
	if synced < end {
		p.wmu.Lock()
		target := p.size // every write up to it has returned: this fsync covers it
		f := p.f         // open until closeFile, which waits for smu
		p.wmu.Unlock()
		if err := s.syncLog(p.path, f); err != nil {
			p.rollback()
			p.smu.Unlock()
			return 0, fmt.Errorf("sync logs: %w", err)
		}
		p.mu.Lock()
		p.synced = max(p.synced, target)
		synced = p.synced
		p.mu.Unlock()
	}
	p.smu.Unlock()
	p.mu.Lock()
	jd, name := p.dir, p.name
	p.mu.Unlock()
	if name != 0 {
		// The file's data is kept: the next sync tries the name again.
		if err := s.syncName(jd, name); err != nil {
			return 0, fmt.Errorf("sync logs: %w", err)
		}
		p.mu.Lock()
		if p.name == name {
			p.name = 0
		}
		p.mu.Unlock()
	}
	seg.mu.Lock()
	defer seg.mu.Unlock()
	// The records that end within what is synced: a rollback since may
	// have cut some of this attempt's.
	n := sort.Search(len(seg.ends), func(i int) bool { return seg.ends[i] > synced })
	seg.acked = max(seg.acked, uint64(n))
	return seg.ackedSeq(), nil
}

// continuing returns the batches that extend seq one by one: duplicates
// (seq ≤ the given one) are skipped and the first gap ends the run.
func continuing(batches []*cloudmlv1.LogBatch, seq uint64) []*cloudmlv1.LogBatch {
	var run []*cloudmlv1.LogBatch
	for _, b := range batches {
		switch {
		case b.GetSeq() <= seq:
		case b.GetSeq() == seq+1:
			run = append(run, b)
			seq++
		default:
			return run
		}
	}
	return run
}

// directData is the batch size from which write hands a batch's data to
// the kernel as it is instead of copying it behind its header.
const directData = 64 << 10

// write appends the records of run to the pack from its size, noting each
// one's start and end in offs and ends, and returns where they end. Small
// records are gathered into one buffer; a large batch's data is written
// from where it is. On failure it cuts the file back, so the file never
// holds records the index does not. The file stays open for the next
// append and sync (closeFile). Callers hold wmu.
func (p *pack) write(task, attempt int32, run []*cloudmlv1.LogBatch, offs, ends []int64, jd *jobDir) (int64, error) {
	f, err := p.openAppend(jd)
	if err != nil {
		return 0, err
	}
	off := p.size
	need := 0 // the buffered records' bytes: most calls carry a line or two
	for _, b := range run {
		if need += packHeader; len(b.GetData()) < directData {
			need += len(b.GetData())
		}
	}
	pos, buf := off, make([]byte, 0, min(need, 64<<10))
	flush := func() error {
		_, err := f.WriteAt(buf, pos)
		pos += int64(len(buf))
		buf = buf[:0]
		return err
	}
	for i, b := range run {
		offs[i] = pos + int64(len(buf))
		if len(b.GetData()) < directData {
			buf = appendPackRecord(buf, task, attempt, b.GetSeq(), byte(b.GetStream()), b.GetData())
			ends[i] = pos + int64(len(buf))
			continue
		}
		buf = appendPackRecord(buf, task, attempt, b.GetSeq(), byte(b.GetStream()), nil)
		binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(len(b.GetData())))
		if err = flush(); err != nil {
			break
		}
		_, err = f.WriteAt(b.GetData(), pos)
		if pos += int64(len(b.GetData())); err != nil {
			break
		}
		ends[i] = pos
	}
	if err == nil && len(buf) > 0 {
		err = flush()
	}
	if err != nil {
		_ = f.Truncate(off) // best effort; a reload would cut a torn tail anyway
		f.Close()
		p.f = nil
		return 0, err
	}
	return pos, nil
}

// rollback forgets the records written after the last durable fsync, of
// every attempt in the pack, and cuts the file back to them, after a failed
// fsync. Callers hold smu.
func (p *pack) rollback() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	cut, segs := p.synced, append([]*segment(nil), p.segs...)
	p.mu.Unlock()
	for _, seg := range segs {
		seg.mu.Lock()
		n := sort.Search(len(seg.ends), func(i int) bool { return seg.ends[i] > cut })
		if n < len(seg.ends) {
			for i := n; i < len(seg.ends); i++ {
				seg.bytes -= seg.ends[i] - seg.offs[i] - packHeader + recordHeader
			}
			seg.offs, seg.ends = seg.offs[:n], seg.ends[:n]
			seg.written = uint64(n)
			// A capped log's last record went with the rest: the writer resends.
			seg.capped, seg.skipped = false, 0
		}
		seg.mu.Unlock()
	}
	p.size = cut
	_ = os.Truncate(p.path, cut) // best effort: what survives is what the writers resend
}

// syncLog fsyncs the job's log file at path, through f when the caller
// has it open (any descriptor of a file syncs all of its writes), after
// the FaultLogSync point. Every sync of a log file goes through it.
func (s *Store) syncLog(path string, f *os.File) error {
	if err := s.fault(FaultLogSync); err != nil {
		return err
	}
	if f != nil {
		return f.Sync()
	}
	return syncFile(path)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
