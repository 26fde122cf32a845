package store

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().Truncate(time.Millisecond).UTC()
	want := &Snapshot{
		Nodes: []*Node{{ID: "node-1", Slots: 2, CertSerial: "ab", State: cloudmlv1.NodeState_NODE_STATE_READY, LastHeartbeat: now, RegisterTime: now}},
		Jobs:  []*Job{{ID: "a-000001", Spec: []byte{1, 2}, State: cloudmlv1.JobState_JOB_STATE_RUNNING, TaskCount: 1, CreateTime: now}},
		Tasks: []*Task{{JobID: "a-000001", Index: 0, Params: map[string]string{"x": "1"}, State: cloudmlv1.TaskState_TASK_STATE_RUNNING, Attempt: 1}},
		Attempts: []*Attempt{{JobID: "a-000001", Task: 0, Attempt: 1, NodeID: "node-1", State: cloudmlv1.TaskState_TASK_STATE_RUNNING,
			Metrics: Metrics{"loss": 0.5, "nan": math.NaN(), "inf": math.Inf(1), "ninf": math.Inf(-1)}, AssignTime: now}},
	}
	want.Tokens = []*JoinToken{{ID: "0123456789ab", SecretSHA256: "cd", CreateTime: now, ExpireTime: now.Add(time.Minute), Uses: 1, Used: 1, Nodes: []string{"node-1"}}}
	want.Credentials = []*Credential{{Name: "admin", Role: "admin", Serial: "ef", CreateTime: now, ExpireTime: now.Add(time.Hour)}}
	if err := s.Save(&Changes{Nodes: want.Nodes, Jobs: want.Jobs, Tasks: want.Tasks, Attempts: want.Attempts, Tokens: want.Tokens, Credentials: want.Credentials}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendLogs("a-000001", 0, 1, []*cloudmlv1.LogBatch{{Seq: 1, Data: []byte("x\n")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if acked, err := s.AckedSeq("a-000001", 0, 1); err != nil || acked != 1 {
		t.Errorf("AckedSeq after reopen = %d, %v; want 1", acked, err)
	}
}

func TestAppendLogsSkipsDuplicatesAndStopsAtGaps(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	b := func(seq uint64) *cloudmlv1.LogBatch {
		return &cloudmlv1.LogBatch{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDERR, Data: []byte{byte('a' + seq)}}
	}
	for i, step := range []struct {
		in           []*cloudmlv1.LogBatch
		acked        uint64
		wantedStored int
	}{
		{[]*cloudmlv1.LogBatch{b(1), b(2)}, 2, 2},
		{[]*cloudmlv1.LogBatch{b(1), b(2), b(3)}, 3, 1},
		{[]*cloudmlv1.LogBatch{b(5)}, 3, 0},
		{[]*cloudmlv1.LogBatch{b(4), b(6)}, 4, 1},
	} {
		acked, stored, err := s.AppendLogs("j", 2, 1, step.in)
		if err != nil || acked != step.acked || stored != step.wantedStored {
			t.Errorf("step %d: acked %d stored %d err %v, want %d %d", i, acked, stored, err, step.acked, step.wantedStored)
		}
	}
	// Another job whose id extends this one's must not show up.
	if _, _, err := s.AppendLogs("j-2", 2, 1, []*cloudmlv1.LogBatch{b(1)}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadLogs("j", 2, 1, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range all {
		seqs = append(seqs, e.Seq)
		if e.Stream != cloudmlv1.LogStream_LOG_STREAM_STDERR || len(e.Data) != 1 || e.Data[0] != byte('a'+e.Seq) {
			t.Errorf("entry %d = %+v", e.Seq, e)
		}
	}
	if diff := cmp.Diff([]uint64{1, 2, 3, 4}, seqs); diff != "" {
		t.Errorf("stored seqs (-want +got):\n%s", diff)
	}
	part, err := s.ReadLogs("j", 2, 1, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(part) != 2 || part[0].Seq != 2 {
		t.Errorf("ReadLogs after 1, 2 bytes = %+v, want seqs 2 and 3", part)
	}
}

// A second Open of a held state gives up with ErrLocked while the lock is
// still held, instead of waiting for it; the holder keeps working, and the
// state opens once it let go.
func TestOpenLockedFailsFast(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	released := false
	defer func() {
		if !released {
			s.Close()
		}
	}()
	type result struct {
		s   *Store
		err error
	}
	second := make(chan result, 1)
	go func() {
		s2, err := Open(dir)
		second <- result{s2, err}
	}()
	var r result
	select {
	case r = <-second:
	case <-time.After(30 * time.Second): // a hang-breaker, not a measure: the claim is the order below
		released = true
		s.Close()
		r = <-second
		if r.s != nil {
			r.s.Close()
		}
		t.Fatalf("second Open returned %v only after the holder let go, want ErrLocked while it holds the lock", r.err)
	}
	if r.s != nil {
		r.s.Close()
	}
	if !errors.Is(r.err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", r.err)
	}
	if err := s.Save(&Changes{Nodes: []*Node{{ID: "node-1", Slots: 1}}}); err != nil {
		t.Errorf("the holder cannot save after a refused Open: %v", err)
	}
	released = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	third := open(t, dir)
	defer third.Close()
	snap, err := third.Load()
	if err != nil || len(snap.Nodes) != 1 {
		t.Errorf("state after the holder let go: %v, %v; want its node", snap, err)
	}
}
