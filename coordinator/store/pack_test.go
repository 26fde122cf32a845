package store

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// failLogSyncWhile is an Options.Fault that fails the log file's fsync
// while *failing is set.
func failLogSyncWhile(failing *bool) func(string) error {
	return func(point string) error {
		if *failing && point == FaultLogSync {
			return ErrInjected
		}
		return nil
	}
}

// legacyRecord is a record of the per-attempt log files stores wrote
// before packs: seq (8B), stream (1B), length (4B), data.
func legacyRecord(b *cloudmlv1.LogBatch) []byte {
	out := binary.BigEndian.AppendUint64(nil, b.GetSeq())
	out = append(out, byte(b.GetStream()))
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.GetData())))
	return append(out, b.GetData()...)
}

// TestPerAttemptFilesMoveIntoThePack: a job's log directory left by a store
// from before packs (one <task>-<attempt>.log per attempt, one with a torn
// tail) is read at the first access: every whole record is in the job's
// pack, the old files are gone, and the attempts' sequences go on.
func TestPerAttemptFilesMoveIntoThePack(t *testing.T) {
	dir := t.TempDir()
	jobDir := filepath.Join(dir, LogDirName, "old-1")
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a1, a2, b1 := batch(1, 50), batch(2, 70000), batch(1, 10)
	c1, c2 := batch(1, 10), batch(2, 0) // the file ends with a header alone
	torn := legacyRecord(batch(2, 30))[:20]
	for name, data := range map[string][]byte{
		"0-1.log": append(legacyRecord(a1), legacyRecord(a2)...),
		"3-2.log": append(legacyRecord(b1), torn...),
		"4-1.log": append(legacyRecord(c1), legacyRecord(c2)...),
	} {
		if err := os.WriteFile(filepath.Join(jobDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dir)
	if diff := cmp.Diff(entriesOf(a1, a2), readAll(t, s, "old-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(entriesOf(b1), readAll(t, s, "old-1", 3, 2, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 3/2 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(entriesOf(c1, c2), readAll(t, s, "old-1", 4, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 4/1 (-want +got):\n%s", diff)
	}
	mustAppend(t, s, "old-1", 3, 2, 2, batch(2, 5))
	entries, err := os.ReadDir(jobDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{PackName}, names); diff != "" {
		t.Errorf("the job's log directory (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(b1, batch(2, 5)), readAll(t, s, "old-1", 3, 2, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 3/2 after a reopen (-want +got):\n%s", diff)
	}
}

// TestAttemptsShareTheirJobsPack: attempts of one job write one file;
// reading one attempt's logs skips the others' records between its own,
// and a limited read stops after the batch that passes the limit.
func TestAttemptsShareTheirJobsPack(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	var want []*cloudmlv1.LogBatch
	for seq := uint64(1); seq <= 4; seq++ {
		b := batch(seq, 100)
		want = append(want, b)
		mustAppend(t, s, "mix-1", 0, 1, seq, b)
		mustAppend(t, s, "mix-1", 1, 1, seq, batch(seq, 7))
	}
	entries, err := os.ReadDir(filepath.Join(dir, LogDirName, "mix-1"))
	if err != nil || len(entries) != 1 || entries[0].Name() != PackName {
		t.Fatalf("the job's log directory holds %v (%v), want %s alone", entries, err, PackName)
	}
	if diff := cmp.Diff(entriesOf(want...), readAll(t, s, "mix-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 (-want +got):\n%s", diff)
	}
	got, err := s.ReadLogs("mix-1", 0, 1, 1, 150)
	if err != nil || len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Errorf("ReadLogs after 1 up to 150 bytes = %d entries, %v; want seqs 2 and 3", len(got), err)
	}
	n, err := s.LogBytes("mix-1", 1, 1, 4)
	if err != nil || n[cloudmlv1.LogStream_LOG_STREAM_STDOUT]+n[cloudmlv1.LogStream_LOG_STREAM_STDERR] != 28 {
		t.Errorf("LogBytes of attempt 1/1 = %v, %v; want 28 bytes", n, err)
	}
}

// TestFailedLogSyncRollsBackEveryAttemptInThePack: a failed fsync of a
// job's pack drops what every attempt wrote since the last good one, not
// only the caller's: they share the file. The writers send it again and it
// is stored once, also across a reopen.
func TestFailedLogSyncRollsBackEveryAttemptInThePack(t *testing.T) {
	dir := t.TempDir()
	var failing bool
	opts := Options{Fault: failLogSyncWhile(&failing)}
	s, err := OpenWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	a1, a2, b1 := batch(1, 40), batch(2, 40), batch(1, 30)
	mustAppend(t, s, "rb-1", 0, 1, 1, a1)
	if _, _, err := s.WriteLogs("rb-1", 0, 1, []*cloudmlv1.LogBatch{a2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.WriteLogs("rb-1", 5, 1, []*cloudmlv1.LogBatch{b1}); err != nil {
		t.Fatal(err)
	}
	failing = true
	if _, err := s.SyncLogs("rb-1", 5, 1); err == nil {
		t.Fatal("SyncLogs with the fsync failing succeeded")
	}
	failing = false
	if acked, err := s.AckedSeq("rb-1", 0, 1); err != nil || acked != 1 {
		t.Errorf("AckedSeq of the other attempt = %d, %v; want 1", acked, err)
	}
	if diff := cmp.Diff(entriesOf(a1), readAll(t, s, "rb-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("the other attempt after the rollback (-want +got):\n%s", diff)
	}
	if got := readAll(t, s, "rb-1", 5, 1, 0, 1<<20); len(got) != 0 {
		t.Errorf("the failed attempt still reads %d entries", len(got))
	}
	mustAppend(t, s, "rb-1", 5, 1, 1, b1)
	mustAppend(t, s, "rb-1", 0, 1, 2, a1, a2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(a1, a2), readAll(t, s, "rb-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 after a reopen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(entriesOf(b1), readAll(t, s, "rb-1", 5, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 5/1 after a reopen (-want +got):\n%s", diff)
	}
}

// TestRollbackGivesBackTheCapsRoom: records cut back after a failed sync
// no longer count towards the attempt's MaxLogBytes, and an attempt of the
// same pack that was capped and synced before stays capped.
func TestRollbackGivesBackTheCapsRoom(t *testing.T) {
	var failing bool
	const note = "[cap]\n"
	s, err := OpenWith(t.TempDir(), Options{MaxLogBytes: 300, LogCapNote: note, Fault: failLogSyncWhile(&failing)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Attempt 2/1 is capped (see TestLogCap for the numbers) and synced.
	mustAppend(t, s, "cap-1", 2, 1, 3, lines(1, 10), lines(2, 10), lines(3, 10))
	// Attempt 0/1 writes two records of 10 lines that a failed sync drops.
	if _, _, err := s.WriteLogs("cap-1", 0, 1, []*cloudmlv1.LogBatch{lines(1, 10), lines(2, 10)}); err != nil {
		t.Fatal(err)
	}
	failing = true
	if _, err := s.SyncLogs("cap-1", 0, 1); err == nil {
		t.Fatal("SyncLogs with the fsync failing succeeded")
	}
	failing = false
	if capped, err := s.LogsCapped("cap-1", 2, 1); err != nil || !capped {
		t.Errorf("the synced capped attempt after another's rollback: capped %v, %v", capped, err)
	}
	// Sent again, the two records fit and the third is cut as the cap says.
	mustAppend(t, s, "cap-1", 0, 1, 3, lines(1, 10), lines(2, 10), lines(3, 10))
	got, err := s.ReadLogs("cap-1", 0, 1, 0, 1<<20)
	if err != nil || len(got) != 3 || string(got[2].Data) != strings.Repeat("0123456789\n", 3)+note {
		t.Fatalf("after the rollback and the resend: %d entries, %v; want the third cut to 3 lines and the note", len(got), err)
	}
}

// TestCapCountsWhatALoadFound: after a reopen, the records an attempt
// already has count towards its MaxLogBytes.
func TestCapCountsWhatALoadFound(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxLogBytes: 300, LogCapNote: "[cap]\n"}
	s, err := OpenWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "cap-2", 0, 1, 2, lines(1, 10), lines(2, 10))
	s.Close()
	if s, err = OpenWith(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 246 bytes so far: a record of 3 lines (13 + 33) still fits, whole;
	// one of 10 more lines does not.
	mustAppend(t, s, "cap-2", 0, 1, 3, lines(3, 3))
	if capped, err := s.LogsCapped("cap-2", 0, 1); err != nil || capped {
		t.Errorf("a third record of 3 lines after a reopen: capped %v, %v; want it to fit", capped, err)
	}
	mustAppend(t, s, "cap-2", 0, 1, 4, lines(4, 10))
	if capped, err := s.LogsCapped("cap-2", 0, 1); err != nil || !capped {
		t.Errorf("a fourth record of 10 lines: capped %v, %v; want capped", capped, err)
	}
}

// TestAttemptZeroLogsSurviveAReopen: the store takes attempt 0 (the
// coordinator numbers attempts from 1) and a load keeps its records.
func TestAttemptZeroLogsSurviveAReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	mustAppend(t, s, "zero-1", 0, 0, 1, batch(1, 20))
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if acked, err := s.AckedSeq("zero-1", 0, 0); err != nil || acked != 1 {
		t.Errorf("attempt 0 after a reopen: acked %d, %v; want 1", acked, err)
	}
}

// TestLegacyFilesBesideAPackAreNotStoredTwice: a crash between writing the
// pack and removing the per-attempt files leaves both; the next load adds
// only the records the pack lacks.
func TestLegacyFilesBesideAPackAreNotStoredTwice(t *testing.T) {
	dir := t.TempDir()
	jobDir := filepath.Join(dir, LogDirName, "half-1")
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The pack's last record is a header alone (no data): the scan of what
	// the pack holds must count it too.
	a1, a2, a3 := batch(1, 30), batch(2, 0), batch(3, 30)
	pack := appendPackRecord(nil, 0, 1, 1, byte(a1.GetStream()), a1.GetData())
	pack = appendPackRecord(pack, 0, 1, 2, byte(a2.GetStream()), a2.GetData())
	legacy := append(append(legacyRecord(a1), legacyRecord(a2)...), legacyRecord(a3)...)
	if err := os.WriteFile(filepath.Join(jobDir, PackName), pack, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jobDir, "0-1.log"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(a1, a2, a3), readAll(t, s, "half-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 (-want +got):\n%s", diff)
	}
}

// TestLegacyFilesBesideATornPack: a crash while the pack was written
// during a move-in can leave a record's header without its data; the move
// goes on from the last whole record, so nothing of the old files is lost
// when the torn tail is cut.
func TestLegacyFilesBesideATornPack(t *testing.T) {
	dir := t.TempDir()
	jobDir := filepath.Join(dir, LogDirName, "torn-1")
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a1, a2, a3 := batch(1, 30), batch(2, 30), batch(3, 30)
	pack := appendPackRecord(nil, 0, 1, 1, byte(a1.GetStream()), a1.GetData())
	pack = appendPackRecord(pack, 0, 1, 2, byte(a2.GetStream()), a2.GetData())[:len(pack)+packHeader+5]
	legacy := append(append(legacyRecord(a1), legacyRecord(a2)...), legacyRecord(a3)...)
	if err := os.WriteFile(filepath.Join(jobDir, PackName), pack, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jobDir, "0-1.log"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	if diff := cmp.Diff(entriesOf(a1, a2, a3), readAll(t, s, "torn-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 (-want +got):\n%s", diff)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if diff := cmp.Diff(entriesOf(a1, a2, a3), readAll(t, s, "torn-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 after a reopen (-want +got):\n%s", diff)
	}
}

// TestEmptyLegacyFileMakesNoPack: an old per-attempt file with no record
// is removed, and no empty pack is made in its place.
func TestEmptyLegacyFileMakesNoPack(t *testing.T) {
	dir := t.TempDir()
	jobDir := filepath.Join(dir, LogDirName, "empty-1")
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jobDir, "0-1.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	defer s.Close()
	if got := readAll(t, s, "empty-1", 0, 1, 0, 1<<20); len(got) != 0 {
		t.Errorf("an empty old file reads %d entries", len(got))
	}
	if entries, err := os.ReadDir(jobDir); err != nil || len(entries) != 0 {
		t.Errorf("the job's log directory holds %v (%v), want nothing", entries, err)
	}
}

// TestUnreadablePackIsAnError: a job's log file that cannot be opened
// (here a directory in its place) makes reading its logs an error that
// names the job and the file and says why, not an empty log.
func TestUnreadablePackIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, LogDirName, "bad-1", PackName), 0o700); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	defer s.Close()
	_, err := s.ReadLogs("bad-1", 0, 1, 0, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "bad-1") || !strings.Contains(err.Error(), filepath.Join("bad-1", PackName)+": is a directory") {
		t.Errorf("ReadLogs with the job's log file unreadable = %v, want the open's error, naming the job and the file", err)
	}
}

// TestAFailedSyncOfTheMoveInKeepsTheOldFiles: when the fsync of the job's
// log file fails while an older store's per-attempt files are moved in,
// the read fails with it and the old files stay; the next read moves them
// in.
func TestAFailedSyncOfTheMoveInKeepsTheOldFiles(t *testing.T) {
	dir := t.TempDir()
	jobDir := filepath.Join(dir, LogDirName, "move-1")
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a1, a2 := batch(1, 30), batch(2, 30)
	old := filepath.Join(jobDir, "0-1.log")
	if err := os.WriteFile(old, append(legacyRecord(a1), legacyRecord(a2)...), 0o600); err != nil {
		t.Fatal(err)
	}
	failing := true
	s, err := OpenWith(dir, Options{Fault: failLogSyncWhile(&failing)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadLogs("move-1", 0, 1, 0, 1<<20); !errors.Is(err, ErrInjected) {
		t.Fatalf("ReadLogs with the move-in's sync failing: %v, want the injected error", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("the old file after a failed move-in: %v", err)
	}
	failing = false
	if diff := cmp.Diff(entriesOf(a1, a2), readAll(t, s, "move-1", 0, 1, 0, 1<<20)); diff != "" {
		t.Errorf("attempt 0/1 after the move-in (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old file after the move-in: %v, want it removed", err)
	}
}

// TestLogFilesHeldOpenAreBounded: appends keep their job's file open for
// the next one (an append opens no file), at most openMax of them, the
// written longest ago closed first; a job whose file was closed is
// written and synced again (reopened, or by name), its logs whole; and
// DeleteJob and Close close what they hold.
func TestLogFilesHeldOpenAreBounded(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.openMax = 2
	base := openFiles(t)
	jobs := []string{"fd-1", "fd-2", "fd-3", "fd-4"}
	want := map[string][]*cloudmlv1.LogBatch{}
	held := func() (out []string) {
		s.segMu.Lock()
		defer s.segMu.Unlock()
		for _, job := range jobs {
			if p := s.packs[job]; p != nil && p.f != nil {
				out = append(out, job)
			}
		}
		return out
	}
	// fd-1, fd-2, fd-1 again, then fd-3: fd-2 was written longest ago.
	for i, job := range []string{"fd-1", "fd-2", "fd-1", "fd-3"} {
		b := batch(uint64(len(want[job])+1), 10)
		want[job] = append(want[job], b)
		mustAppend(t, s, job, 0, 1, uint64(len(want[job])), b)
		if i == 0 && openFiles(t) != base+1 {
			t.Errorf("%d files open after the first append, %d before; want its job's held open", openFiles(t), base)
		}
	}
	if got := held(); !slices.Equal(got, []string{"fd-1", "fd-3"}) {
		t.Errorf("files held open: %v, want fd-1 and fd-3 (fd-2 written longest ago)", got)
	}
	for round := uint64(1); round <= 25; round++ {
		for _, job := range jobs {
			b := batch(uint64(len(want[job])+1), 10)
			want[job] = append(want[job], b)
			mustAppend(t, s, job, 0, 1, uint64(len(want[job])), b)
			if n := openFiles(t) - base; n > 2 {
				t.Fatalf("%d files open after appending to %s, want at most 2", n, job)
			}
		}
	}
	before := openFiles(t)
	for range 50 {
		b := batch(uint64(len(want["fd-4"])+1), 10)
		want["fd-4"] = append(want["fd-4"], b)
		mustAppend(t, s, "fd-4", 0, 1, uint64(len(want["fd-4"])), b)
	}
	if after := openFiles(t); after != before {
		t.Errorf("%d files open after 50 appends to one job, %d before", after, before)
	}
	// fd-1's file is closed between a write and its sync: by name.
	b := batch(uint64(len(want["fd-1"])+1), 10)
	want["fd-1"] = append(want["fd-1"], b)
	if _, _, err := s.WriteLogs("fd-1", 0, 1, []*cloudmlv1.LogBatch{b}); err != nil {
		t.Fatal(err)
	}
	s.segMu.Lock()
	p := s.packs["fd-1"]
	s.segMu.Unlock()
	if err := p.closeFile(); err != nil {
		t.Fatal(err)
	}
	if acked, err := s.SyncLogs("fd-1", 0, 1); err != nil || acked != uint64(len(want["fd-1"])) {
		t.Fatalf("SyncLogs after the file was closed = %d, %v; want %d", acked, err, len(want["fd-1"]))
	}
	for _, job := range jobs {
		if diff := cmp.Diff(entriesOf(want[job]...), readAll(t, s, job, 0, 1, 0, 1<<20)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", job, diff)
		}
	}
	if got := held(); !slices.Contains(got, "fd-4") {
		t.Fatalf("files held open: %v, want fd-4's among them", got)
	}
	inUse := openFiles(t)
	if _, err := s.DeleteJob("fd-4"); err != nil {
		t.Fatal(err)
	}
	if n := openFiles(t); n != inUse-1 {
		t.Errorf("%d files open after deleting a job that held one, %d before", n, inUse)
	}
	s.segMu.Lock()
	kept := len(s.open)
	s.segMu.Unlock()
	if kept != 1 {
		t.Errorf("%d packs counted as holding a file after the delete, want 1", kept)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := openFiles(t); n > base-1 { // base counted the bbolt file
		t.Errorf("%d files open after Close, %d before the store wrote logs (its bbolt file among them)", n, base)
	}
	s = open(t, dir)
	defer s.Close()
	for _, job := range jobs[:3] {
		if diff := cmp.Diff(entriesOf(want[job]...), readAll(t, s, job, 0, 1, 0, 1<<20)); diff != "" {
			t.Errorf("%s after a reopen (-want +got):\n%s", job, diff)
		}
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	testutil.NeedSystem(t, "/proc/self/fd (to count open files)", err)
	return len(fds)
}

// TestSortOps: a batch's writes go to bbolt in bucket and key order, and
// the writes of one key keep their order, so the last one wins.
func TestSortOps(t *testing.T) {
	ops := []op{
		{bucket: []byte("b"), key: []byte("2"), val: []byte("first")},
		{bucket: []byte("a"), key: []byte("9")},
		{bucket: []byte("b"), key: []byte("1")},
		{bucket: []byte("b"), key: []byte("2"), val: []byte("second")},
		{bucket: []byte("a"), key: []byte("3")},
	}
	sortOps(ops)
	var got []string
	for _, o := range ops {
		got = append(got, string(o.bucket)+"/"+string(o.key)+string(o.val))
	}
	want := []string{"a/3", "a/9", "b/1", "b/2first", "b/2second"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sorted ops (-want +got):\n%s", diff)
	}
}
