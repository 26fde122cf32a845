package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// batch is batch seq of an attempt, with data that names it.
// AppendLogs writes batches (WriteLogs) and syncs them (SyncLogs), as
// the log broker does for a call, and returns the acknowledged seq and
// how many batches were stored.
func (s *Store) AppendLogs(job string, task, attempt int32, batches []*cloudmlv1.LogBatch) (acked uint64, stored int, err error) {
	if _, stored, err = s.WriteLogs(job, task, attempt, batches); err != nil {
		return 0, 0, err
	}
	if acked, err = s.SyncLogs(job, task, attempt); err != nil {
		return 0, 0, err
	}
	return acked, stored, nil
}

func batch(seq uint64, size int) *cloudmlv1.LogBatch {
	stream := cloudmlv1.LogStream_LOG_STREAM_STDOUT
	if seq%3 == 0 {
		stream = cloudmlv1.LogStream_LOG_STREAM_STDERR
	}
	line := fmt.Sprintf("batch %d\n", seq)
	data := bytes.Repeat([]byte(line), size/len(line)+1)[:size]
	return &cloudmlv1.LogBatch{Seq: seq, Stream: stream, Data: data}
}

// entrySum stands for a LogEntry in comparisons; diffs of megabytes of
// data are slow and unreadable.
type entrySum struct {
	Seq    uint64
	Stream cloudmlv1.LogStream
	Len    int
	SHA256 string
}

func sumOf(seq uint64, stream cloudmlv1.LogStream, data []byte) entrySum {
	h := sha256.Sum256(data)
	return entrySum{seq, stream, len(data), hex.EncodeToString(h[:8])}
}

func entriesOf(batches ...*cloudmlv1.LogBatch) []entrySum {
	var out []entrySum
	for _, b := range batches {
		out = append(out, sumOf(b.GetSeq(), b.GetStream(), b.GetData()))
	}
	return out
}

func sums(entries []LogEntry) []entrySum {
	var out []entrySum
	for _, e := range entries {
		out = append(out, sumOf(e.Seq, e.Stream, e.Data))
	}
	return out
}

func mustAppend(t *testing.T, s *Store, job string, task, attempt int32, wantAcked uint64, batches ...*cloudmlv1.LogBatch) {
	t.Helper()
	acked, _, err := s.AppendLogs(job, task, attempt, batches)
	if err != nil || acked != wantAcked {
		t.Fatalf("AppendLogs(%s %d %d) = acked %d, %v; want %d", job, task, attempt, acked, err, wantAcked)
	}
}

func readAll(t *testing.T, s *Store, job string, task, attempt int32, after uint64, maxBytes int) []entrySum {
	t.Helper()
	got, err := s.ReadLogs(job, task, attempt, after, maxBytes)
	if err != nil {
		t.Fatalf("ReadLogs(%s %d %d after %d): %v", job, task, attempt, after, err)
	}
	return sums(got)
}

func TestLogsRoundTrip(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var all []*cloudmlv1.LogBatch
	for seq := uint64(1); seq <= 10; seq++ {
		all = append(all, batch(seq, int(seq)*1000))
	}
	mustAppend(t, s, "rt-000001", 0, 1, 3, all[:3]...)
	mustAppend(t, s, "rt-000001", 0, 1, 10, all[3:]...)
	if diff := cmp.Diff(entriesOf(all...), readAll(t, s, "rt-000001", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("read all (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(entriesOf(all[4:7]...), readAll(t, s, "rt-000001", 0, 1, 4, 5000+6000+1)); diff != "" {
		t.Errorf("read after 4, 11001 bytes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(entriesOf(all[9]), readAll(t, s, "rt-000001", 0, 1, 9, 1)); diff != "" {
		t.Errorf("read after 9, 1 byte (-want +got):\n%s", diff)
	}
	if got := readAll(t, s, "rt-000001", 0, 1, 10, 1<<20); got != nil {
		t.Errorf("read after acked = %v, want nothing", got)
	}
	if got := readAll(t, s, "rt-000001", 0, 2, 0, 1<<20); got != nil {
		t.Errorf("read of an attempt without logs = %v, want nothing", got)
	}
	// Paging through with a small limit yields every entry once, in order.
	var paged []entrySum
	for after := uint64(0); ; {
		got := readAll(t, s, "rt-000001", 0, 1, after, 4000)
		if len(got) == 0 {
			break
		}
		paged = append(paged, got...)
		after = got[len(got)-1].Seq
	}
	if diff := cmp.Diff(entriesOf(all...), paged); diff != "" {
		t.Errorf("paged read (-want +got):\n%s", diff)
	}
}

func TestLogsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b1, b2, b3 := batch(1, 100), batch(2, 70000), batch(3, 5)
	mustAppend(t, s, "rs-000001", 4, 2, 2, b1, b2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if acked, err := s.AckedSeq("rs-000001", 4, 2); err != nil || acked != 2 {
		t.Errorf("AckedSeq after restart = %d, %v; want 2", acked, err)
	}
	if diff := cmp.Diff(entriesOf(b1, b2), readAll(t, s, "rs-000001", 4, 2, 0, 1<<20)); diff != "" {
		t.Errorf("read after restart (-want +got):\n%s", diff)
	}
	// Duplicates are still recognised, and the sequence goes on.
	acked, stored, err := s.AppendLogs("rs-000001", 4, 2, []*cloudmlv1.LogBatch{b2, b3})
	if err != nil || acked != 3 || stored != 1 {
		t.Errorf("append after restart = acked %d stored %d %v; want 3 1", acked, stored, err)
	}
	if diff := cmp.Diff(entriesOf(b1, b2, b3), readAll(t, s, "rs-000001", 4, 2, 0, 1<<20)); diff != "" {
		t.Errorf("read after appending (-want +got):\n%s", diff)
	}
}

func TestLogsTornTailTruncated(t *testing.T) {
	b1, b2 := batch(1, 300), batch(2, 40)
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"partial header", appendPackRecord(nil, 0, 1, 3, 1, []byte("lost\n"))[:7]},
		{"partial data", appendPackRecord(nil, 0, 1, 3, 1, []byte("lost line\n"))[:packHeader+4]},
		{"zeroed extension", make([]byte, 64)},
		{"wrong seq", appendPackRecord(nil, 0, 1, 9, 1, []byte("stray\n"))},
		{"negative task", appendPackRecord(nil, -1, 1, 1, 1, []byte("stray\n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			mustAppend(t, s, "tt-000001", 0, 1, 2, b1, b2)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, LogDirName, "tt-000001", PackName)
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(bytes.Clone(good), tc.tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir)
			defer s.Close()
			if acked, err := s.AckedSeq("tt-000001", 0, 1); err != nil || acked != 2 {
				t.Errorf("AckedSeq = %d, %v; want 2", acked, err)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, good) {
				t.Errorf("file after load: %d bytes, %v; want the %d good bytes", len(got), err, len(good))
			}
			b3 := batch(3, 20)
			mustAppend(t, s, "tt-000001", 0, 1, 3, b3)
			if diff := cmp.Diff(entriesOf(b1, b2, b3), readAll(t, s, "tt-000001", 0, 1, 0, 1<<20)); diff != "" {
				t.Errorf("read (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsManyAttemptsConcurrently(t *testing.T) {
	const attempts, calls = 200, 10
	dir := t.TempDir()
	s := open(t, dir)
	var wg sync.WaitGroup
	errs := make(chan error, 2*attempts)
	for a := int32(1); a <= attempts; a++ {
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			for c := range uint64(calls) {
				b := []*cloudmlv1.LogBatch{batch(2*c+1, 3000), batch(2*c+2, 10)}
				if acked, _, err := s.AppendLogs("many-000001", a%7, a, b); err != nil || acked != 2*c+2 {
					errs <- fmt.Errorf("attempt %d call %d: acked %d, %w", a, c, acked, err)
					return
				}
			}
		}()
		go func() { // follower: reads whatever is acked, in order
			defer wg.Done()
			next := uint64(1)
			for next <= 2*calls {
				got, err := s.ReadLogs("many-000001", a%7, a, next-1, 5000)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					// Not a busy loop: 200 spinning followers starved the
					// other packages' tests on a 2-core machine.
					time.Sleep(time.Millisecond)
				}
				for _, e := range got {
					if want := batch(next, len(e.Data)); e.Seq != next || !bytes.Equal(e.Data, want.GetData()) {
						errs <- fmt.Errorf("attempt %d: got seq %d, want %d", a, e.Seq, next)
						return
					}
					next++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	for a := int32(1); a <= attempts; a++ {
		if acked, err := s.AckedSeq("many-000001", a%7, a); err != nil || acked != 2*calls {
			t.Errorf("attempt %d after restart: acked %d, %v; want %d", a, acked, err, 2*calls)
		}
	}
}

func TestLogsRejectHostileIDs(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	for _, id := range []struct {
		job           string
		task, attempt int32
	}{
		{"", 0, 1}, {".", 0, 1}, {"..", 0, 1}, {"../x", 0, 1}, {"a/b", 0, 1}, {"a\\b", 0, 1},
		{"-a", 0, 1}, {"A", 0, 1}, {"a\x00b", 0, 1}, {"a b", 0, 1}, {"ok", -1, 1}, {"ok", 0, -1},
	} {
		if _, _, err := s.AppendLogs(id.job, id.task, id.attempt, []*cloudmlv1.LogBatch{batch(1, 5)}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("AppendLogs(%q %d %d) = %v, want ErrInvalidID", id.job, id.task, id.attempt, err)
		}
		if _, err := s.ReadLogs(id.job, id.task, id.attempt, 0, 10); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ReadLogs(%q %d %d) = %v, want ErrInvalidID", id.job, id.task, id.attempt, err)
		}
	}
	left, err := os.ReadDir(filepath.Join(dir, LogDirName))
	if err != nil || len(left) != 0 {
		t.Errorf("log dir holds %v (%v), want nothing", left, err)
	}
	mustAppend(t, s, "a.b_c-1", 0, 0, 1, batch(1, 5))
}

func TestLogsScanAcrossChunks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	var all []*cloudmlv1.LogBatch
	for seq := uint64(1); seq <= 40; seq++ {
		size := 77777 + int(seq)
		if seq == 20 {
			size = 5*scanChunk/2 + 3
		}
		all = append(all, batch(seq, size))
	}
	for i := 0; i < len(all); i += 8 {
		mustAppend(t, s, "chunks-000001", 1, 1, uint64(i+8), all[i:i+8]...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if acked, err := s.AckedSeq("chunks-000001", 1, 1); err != nil || acked != 40 {
		t.Fatalf("AckedSeq after restart = %d, %v; want 40", acked, err)
	}
	if diff := cmp.Diff(entriesOf(all...), readAll(t, s, "chunks-000001", 1, 1, 0, 1<<30)); diff != "" {
		t.Errorf("read after restart (-want +got):\n%s", diff)
	}
}

func TestLogsWrittenVisibleBeforeSync(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b1, b2, b3, b4 := batch(1, 100), batch(2, 200), batch(3, 300), batch(4, 50)
	written, stored, err := s.WriteLogs("ws-000001", 0, 1, []*cloudmlv1.LogBatch{b1, b2})
	if err != nil || written != 2 || stored != 2 {
		t.Fatalf("WriteLogs = written %d stored %d %v; want 2 2", written, stored, err)
	}
	// Readers see written batches; the durable seq waits for the sync.
	if diff := cmp.Diff(entriesOf(b1, b2), readAll(t, s, "ws-000001", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("read before sync (-want +got):\n%s", diff)
	}
	if acked, err := s.AckedSeq("ws-000001", 0, 1); err != nil || acked != 0 {
		t.Errorf("AckedSeq before sync = %d, %v; want 0", acked, err)
	}
	// Duplicates and overlaps count against the written seq; a gap stops.
	written, stored, err = s.WriteLogs("ws-000001", 0, 1, []*cloudmlv1.LogBatch{b2, b3, batch(5, 10)})
	if err != nil || written != 3 || stored != 1 {
		t.Fatalf("WriteLogs overlap = written %d stored %d %v; want 3 1", written, stored, err)
	}
	if acked, err := s.SyncLogs("ws-000001", 0, 1); err != nil || acked != 3 {
		t.Fatalf("SyncLogs = %d, %v; want 3", acked, err)
	}
	if acked, err := s.AckedSeq("ws-000001", 0, 1); err != nil || acked != 3 {
		t.Errorf("AckedSeq after sync = %d, %v; want 3", acked, err)
	}
	// AppendLogs makes earlier unsynced writes durable too.
	if _, _, err := s.WriteLogs("ws-000001", 0, 1, []*cloudmlv1.LogBatch{b4}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "ws-000001", 0, 1, 4, b4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(b1, b2, b3, b4), readAll(t, s, "ws-000001", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("read after restart (-want +got):\n%s", diff)
	}
}

func TestLogsMixedSizesInOneWrite(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	var all []*cloudmlv1.LogBatch
	for i, size := range []int{10, directData + 7, 20, 30, 2 * directData, 5, directData} {
		all = append(all, batch(uint64(i+1), size))
	}
	mustAppend(t, s, "mixed-000001", 0, 1, uint64(len(all)), all...)
	if diff := cmp.Diff(entriesOf(all...), readAll(t, s, "mixed-000001", 0, 1, 0, 1<<30)); diff != "" {
		t.Errorf("read (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(all[2:]...), readAll(t, s, "mixed-000001", 0, 1, 2, 1<<30)); diff != "" {
		t.Errorf("read after restart (-want +got):\n%s", diff)
	}
}

func TestLogBytesCountsEachStream(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	// batch(3) is stderr, the others stdout.
	mustAppend(t, s, "lb-000001", 0, 1, 4, batch(1, 100), batch(2, 70000), batch(3, 5), batch(4, 9))
	out, err := s.LogBytes("lb-000001", 0, 1, 3)
	want := map[cloudmlv1.LogStream]uint64{cloudmlv1.LogStream_LOG_STREAM_STDOUT: 70100, cloudmlv1.LogStream_LOG_STREAM_STDERR: 5}
	if err != nil || !cmp.Equal(out, want) {
		t.Errorf("LogBytes up to 3 = %v, %v; want %v", out, err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir) // counted from the file after a restart too
	defer s.Close()
	out, err = s.LogBytes("lb-000001", 0, 1, 99)
	want[cloudmlv1.LogStream_LOG_STREAM_STDOUT] += 9
	if err != nil || !cmp.Equal(out, want) {
		t.Errorf("LogBytes up to 99 after restart = %v, %v; want %v", out, err, want)
	}
	if out, err := s.LogBytes("lb-000002", 0, 1, 5); err != nil || len(out) != 0 {
		t.Errorf("LogBytes of an attempt with no logs = %v, %v", out, err)
	}
}
