package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func lines(seq uint64, n int) *cloudmlv1.LogBatch {
	return &cloudmlv1.LogBatch{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(strings.Repeat("0123456789\n", n))}
}

// TestLogCap: a log stops at MaxLogBytes with the whole lines that fit and
// the note once; later batches, any seq, are acknowledged and dropped, also
// after a reopen; the file never grows past the cap plus the note.
func TestLogCap(t *testing.T) {
	dir := t.TempDir()
	const note = "[cap]\n"
	// Two records of 10 lines (13 + 110 bytes each) fit in 300; the third
	// has room for 300 - 246 - 13 = 41 bytes: 3 whole lines.
	opts := Options{MaxLogBytes: 300, LogCapNote: note}
	s, err := OpenWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "j-1", 0, 1, 2, lines(1, 10), lines(2, 10))
	mustAppend(t, s, "j-1", 0, 1, 5, lines(3, 10), lines(4, 10), lines(5, 10))
	mustAppend(t, s, "j-1", 0, 1, 9, lines(9, 1)) // a gap, acknowledged all the same
	got, err := s.ReadLogs("j-1", 0, 1, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strings.Repeat("0123456789\n", 10), strings.Repeat("0123456789\n", 10), strings.Repeat("0123456789\n", 3) + note}
	var data []string
	for _, e := range got {
		data = append(data, string(e.Data))
		if e.Stream != cloudmlv1.LogStream_LOG_STREAM_STDOUT {
			t.Errorf("record %d stream %v", e.Seq, e.Stream)
		}
	}
	if diff := cmp.Diff(want, data); diff != "" {
		t.Errorf("kept logs (-want +got):\n%s", diff)
	}
	capped, err := s.LogsCapped("j-1", 0, 1)
	if err != nil || !capped {
		t.Errorf("LogsCapped = %v, %v", capped, err)
	}
	// In the job's pack each record's header is 8 bytes longer than the
	// 13 the cap counts: it names the task and the attempt too.
	path := filepath.Join(dir, LogDirName, "j-1", PackName)
	fi, err := os.Stat(path)
	if want := int64(246 + 13 + 33 + len(note) + 3*(packHeader-recordHeader)); err != nil || fi.Size() != want {
		t.Errorf("file size %v, %v; want %d", fi.Size(), err, want)
	}
	n, err := s.LogBytes("j-1", 0, 1, 3)
	if err != nil || n[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != 259 {
		t.Errorf("LogBytes = %v, %v; want 259 stdout", n, err)
	}
	s.Close()

	// Reopened: still capped; the agent's next seq is acknowledged.
	s, err = OpenWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if acked, err := s.AckedSeq("j-1", 0, 1); err != nil || acked != 3 {
		t.Errorf("AckedSeq after reopen = %d, %v; want 3", acked, err)
	}
	mustAppend(t, s, "j-1", 0, 1, 12, lines(10, 100), lines(12, 1))
	if fi2, err := os.Stat(path); err != nil || fi2.Size() != fi.Size() {
		t.Errorf("file grew after the cap: %v", err)
	}
	// Another attempt is not capped.
	mustAppend(t, s, "j-1", 0, 2, 1, lines(1, 1))
	if capped, _ := s.LogsCapped("j-1", 0, 2); capped {
		t.Error("attempt 2 capped")
	}
}

// TestLogCapNoRoom: a batch with no whole line that fits leaves the note
// alone.
func TestLogCapNoRoom(t *testing.T) {
	s, err := OpenWith(t.TempDir(), Options{MaxLogBytes: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "j-1", 0, 1, 1, lines(1, 1))
	got, err := s.ReadLogs("j-1", 0, 1, 0, 1<<20)
	if err != nil || len(got) != 1 || !strings.HasPrefix(string(got[0].Data), "[cloudml] this attempt's logs reached the limit of 20 bytes") {
		t.Errorf("ReadLogs = %v, %v", got, err)
	}
}
