package store

import (
	"os"
	"strings"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestReopenKeepsAnEmptyRecordAfterABigOne: a record whose data runs past
// the scan chunk, followed by a record with no data (its header ends the
// file), both survive a reopen.
func TestReopenKeepsAnEmptyRecordAfterABigOne(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	big := &cloudmlv1.LogBatch{Seq: 1, Data: []byte(strings.Repeat("x", scanChunk+100))}
	mustAppend(t, s, "j-1", 0, 1, 2, big, &cloudmlv1.LogBatch{Seq: 2})
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if acked, err := s.AckedSeq("j-1", 0, 1); err != nil || acked != 2 {
		t.Fatalf("after reopen acked %d, %v; want 2 (the empty record kept)", acked, err)
	}
	if es, err := s.ReadLogs("j-1", 1, 1, 0, 1<<30); err != nil || len(es) != 0 {
		t.Fatalf("another attempt's logs: %d entries, %v", len(es), err)
	}
	es, err := s.ReadLogs("j-1", 0, 1, 0, 1<<30)
	if err != nil || len(es) != 2 || es[1].Seq != 2 || len(es[1].Data) != 0 {
		t.Fatalf("ReadLogs = %d entries, %v; want the big one and the empty one", len(es), err)
	}
}

// TestReadLogsRefusesARecordOverrunningTheIndex: a record whose length, in
// the file, runs past where the index says the next one starts is an
// error, not a slice past the read.
func TestReadLogsRefusesARecordOverrunningTheIndex(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustAppend(t, s, "j-1", 0, 1, 2, lines(1, 1), lines(2, 1))
	seg, err := s.segment("j-1", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(seg.p.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Record 1 now claims 44 bytes of data: 1 past what the two records
	// read hold (2 x 21 bytes of header and 11 of data each).
	if _, err := f.WriteAt([]byte{0, 0, 0, 44}, 17); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := s.ReadLogs("j-1", 0, 1, 0, 1<<20); err == nil || !strings.Contains(err.Error(), "overruns the index") {
		t.Fatalf("ReadLogs of a corrupt record = %v, want an error saying it overruns the index", err)
	}
}

// TestLogCapExactFit: a batch that fills MaxLogBytes to the byte is stored
// whole, without the cap's note.
func TestLogCapExactFit(t *testing.T) {
	b := lines(1, 10)
	s, err := OpenWith(t.TempDir(), Options{MaxLogBytes: int64(recordHeader + len(b.Data)), LogCapNote: "[cap]\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "j-1", 0, 1, 1, b)
	got, err := s.ReadLogs("j-1", 0, 1, 0, 1<<20)
	if err != nil || len(got) != 1 || string(got[0].Data) != string(b.Data) {
		t.Fatalf("ReadLogs = %d entries, %v; want the batch whole", len(got), err)
	}
	if capped, _ := s.LogsCapped("j-1", 0, 1); capped {
		t.Error("a log that exactly fits is marked capped")
	}
}

// TestLongestJobID: ids of up to 128 characters have logs; longer ones
// are refused.
func TestLongestJobID(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	id := strings.Repeat("a", 128)
	mustAppend(t, s, id, 0, 1, 1, lines(1, 1))
	if _, _, err := s.AppendLogs(id+"a", 0, 1, []*cloudmlv1.LogBatch{lines(1, 1)}); err == nil {
		t.Error("a 129-character job id was accepted")
	}
}
