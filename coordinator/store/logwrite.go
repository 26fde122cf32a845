package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// AppendLogs stores the batches of one attempt that continue its sequence
// (WriteLogs) and makes everything written so far durable (SyncLogs)
// before it returns the acknowledged sequence and how many batches it
// stored.
//
// The fsync goes through the file the write opened (any descriptor of a
// file syncs all of its writes): opening it again by name was one more
// open and close per call, 0.1 s of the coordinator's CPU per 10,000
// attempts at 1,000 nodes.
func (s *Store) AppendLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (acked uint64, stored int, err error) {
	_, stored, f, err := s.writeLogs(job, task, attempt, batches, true)
	if err != nil {
		return 0, 0, err
	}
	if f != nil {
		defer f.Close()
	}
	acked, err = s.syncLogs(job, task, attempt, f)
	if err != nil {
		return 0, 0, err
	}
	return acked, stored, nil
}

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
	written, stored, _, err = s.writeLogs(job, task, attempt, batches, false)
	return written, stored, err
}

// writeLogs is WriteLogs; with keep, it returns the file it wrote to still
// open (nil when it wrote nothing), for the caller to sync and close.
func (s *Store) writeLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch, keep bool) (written uint64, stored int, kept *os.File, err error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("write logs: %w", err)
	}
	seg.wmu.Lock()
	defer seg.wmu.Unlock()
	seg.mu.Lock()
	written, size, capped := seg.written, seg.size, seg.capped
	seg.mu.Unlock()
	if capped {
		return seg.skip(batches), 0, nil, nil
	}

	run := continuing(batches, written)
	if len(run) == 0 {
		return written, 0, nil, nil
	}
	run, capped = s.capRun(run, size)
	var jd *jobDir
	if !seg.created || seg.found {
		s.segMu.Lock()
		jd, err = s.jobDirLocked(job)
		s.segMu.Unlock()
		if err != nil {
			return 0, 0, nil, fmt.Errorf("write logs: %w", err)
		}
	}
	offs := make([]int64, len(run))
	end, kept, err := seg.write(run, size, offs, jd, keep)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("write logs: %w", err)
	}
	seg.mu.Lock()
	seg.written = written + uint64(len(run))
	seg.size = end
	seg.offs = append(seg.offs, offs...)
	seg.capped = capped
	written = seg.written
	seg.mu.Unlock()
	if capped {
		written = seg.skip(batches)
	}
	return written, len(run), kept, nil
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
func (s *Store) SyncLogs(job string, task, attempt int32) (acked uint64, err error) {
	return s.syncLogs(job, task, attempt, nil)
}

// syncLogs is SyncLogs, syncing through f when it is an open descriptor
// of the attempt's file (by name otherwise).
func (s *Store) syncLogs(job string, task, attempt int32, f *os.File) (acked uint64, err error) {
	seg, err := s.segment(job, task, attempt)
	if err != nil {
		return 0, fmt.Errorf("sync logs: %w", err)
	}
	seg.smu.Lock()
	defer seg.smu.Unlock()
	seg.mu.Lock()
	written, acked := seg.written, seg.acked
	jd, name := seg.dir, seg.name
	if written <= acked {
		acked = seg.ackedSeq()
		seg.mu.Unlock()
		return acked, nil
	}
	seg.mu.Unlock()
	// Every write up to written has returned, so this fsync covers it.
	doSync := func() error { return syncFile(seg.path) }
	if f != nil {
		doSync = f.Sync
	}
	if err := doSync(); err != nil {
		seg.rollback()
		return 0, fmt.Errorf("sync logs: %w", err)
	}
	if name != 0 {
		// The file's data is kept: the next sync tries the name again.
		if err := s.syncName(jd, name); err != nil {
			return 0, fmt.Errorf("sync logs: %w", err)
		}
	}
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if seg.name == name {
		seg.name = 0
	}
	seg.acked = max(seg.acked, written)
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

// write writes the records of run from off, noting each one's offset in
// offs, and returns where they end. Small records are gathered into one
// buffer; a large batch's data is written from where it is. On failure it
// cuts the file back to off, so the file never holds records the index
// does not. With keep, it returns the file still open for the caller to
// close. Callers hold wmu.
func (seg *segment) write(run []*cloudmlv1.LogBatch, off int64, offs []int64, jd *jobDir, keep bool) (int64, *os.File, error) {
	f, err := seg.openAppend(jd)
	if err != nil {
		return 0, nil, err
	}
	need := 0 // the buffered records' bytes: most calls carry a line or two
	for _, b := range run {
		if need += recordHeader; len(b.GetData()) < directData {
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
			buf = appendRecord(buf, b.GetSeq(), byte(b.GetStream()), b.GetData())
			continue
		}
		buf = appendRecord(buf, b.GetSeq(), byte(b.GetStream()), nil)
		binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(len(b.GetData())))
		if err = flush(); err != nil {
			break
		}
		_, err = f.WriteAt(b.GetData(), pos)
		if pos += int64(len(b.GetData())); err != nil {
			break
		}
	}
	if err == nil && len(buf) > 0 {
		err = flush()
	}
	if err != nil {
		_ = f.Truncate(off) // best effort; a reload would cut a torn tail anyway
		f.Close()
		return 0, nil, err
	}
	if keep {
		return pos, f, nil
	}
	return pos, nil, f.Close()
}

// rollback forgets the records written after the last durable one and cuts
// the file back to them, after a failed fsync. Callers hold smu.
func (seg *segment) rollback() {
	seg.wmu.Lock()
	defer seg.wmu.Unlock()
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if seg.written <= seg.acked {
		return
	}
	cut := seg.offs[seg.acked]
	seg.offs = seg.offs[:seg.acked]
	seg.written, seg.size = seg.acked, cut
	// A capped log's last record went with the rest: the writer resends.
	seg.capped, seg.skipped = false, 0
	_ = os.Truncate(seg.path, cut) // best effort: what survives is what the writer resends
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
