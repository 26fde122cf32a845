package simagent

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSnapshotRoundTrip hands a Recorder through JSON, as a fleet in a
// child process does, and reads the same measurements from the copy.
func TestSnapshotRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 123456789, time.UTC)
	r := NewRecorder()
	r.samples[CallHeartbeat] = []Sample{{At: at, Took: 3 * time.Millisecond}, {At: at.Add(time.Second), Took: time.Millisecond}}
	r.samples[CallRegister] = []Sample{{At: at, Took: 40 * time.Millisecond}}
	r.Error(CallSession, status.Error(codes.Unavailable, "gone"))
	r.Error(CallSession, errors.New("again"))
	r.assignedOnce(at.Add(2 * time.Second))
	r.assignedOnce(at.Add(time.Second))
	r.ran("job-1", 0)
	r.ran("job-1", 0)
	r.ran("job-1", 7)
	r.sessionStarted(at, true)
	r.sessionStarted(at.Add(time.Second), false)

	data, err := json.Marshal(r.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	got := FromSnapshot(s)

	for _, call := range []string{CallHeartbeat, CallRegister, CallSession} {
		if diff := cmp.Diff(r.Latencies(call, time.Time{}, time.Time{}), got.Latencies(call, time.Time{}, time.Time{})); diff != "" {
			t.Errorf("%s latencies (-want +got):\n%s", call, diff)
		}
	}
	if n := len(got.Latencies(CallHeartbeat, at.Add(time.Millisecond), time.Time{})); n != 1 {
		t.Errorf("%d heartbeats began after the first, want 1 (times must survive JSON)", n)
	}
	if diff := cmp.Diff(r.Assigned(), got.Assigned(), cmp.Comparer(time.Time.Equal)); diff != "" {
		t.Errorf("assigned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(r.Runs("job-1"), got.Runs("job-1")); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if got.RunTwice("job-1") != 1 {
		t.Errorf("RunTwice = %d, want 1", got.RunTwice("job-1"))
	}
	if diff := cmp.Diff(r.Errors(), got.Errors()); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if n, last := got.Ready(); n != 1 || !last.Equal(at) {
		t.Errorf("Ready = %d, %v; want 1, %v", n, last, at)
	}
	if got.Reconnects() != 1 {
		t.Errorf("Reconnects = %d, want 1", got.Reconnects())
	}

	// A snapshot is a copy: the recorder goes on alone.
	snap := r.Snapshot()
	r.ran("job-1", 7)
	r.Observe(CallHeartbeat, at, nil)
	if snap.Runs["job-1"][7] != 1 || len(snap.Samples[CallHeartbeat]) != 2 {
		t.Errorf("calls recorded after the snapshot reached it: runs %v, %d heartbeats", snap.Runs, len(snap.Samples[CallHeartbeat]))
	}
}
