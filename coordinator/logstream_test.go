package coordinator

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// logStream opens a StreamLogs stream as the agent.
func (a *fakeAgent) logStream(ctx context.Context) cloudmlv1.AgentService_StreamLogsClient {
	a.t.Helper()
	st, err := a.client.StreamLogs(ctx, a.creds())
	if err != nil {
		a.t.Fatalf("StreamLogs: %v", err)
	}
	return st
}

// sendLogs sends one request and waits for the acknowledgement of want.
func sendLogs(t *testing.T, st cloudmlv1.AgentService_StreamLogsClient, ref *cloudmlv1.TaskRef, want uint64, batches ...*cloudmlv1.LogBatch) {
	t.Helper()
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref, Batches: batches}); err != nil {
		t.Fatalf("send: %v", err)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for ack %d: %v", want, err)
		}
		if resp.GetAckedSeq() > want {
			t.Fatalf("acked %d, want %d", resp.GetAckedSeq(), want)
		}
		if resp.GetAckedSeq() == want {
			return
		}
	}
}

// endErr closes the agent's side and returns how the stream ended.
func endErr(st cloudmlv1.AgentService_StreamLogsClient) error {
	st.CloseSend()
	for {
		if _, err := st.Recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func TestStreamLogsDupGapAndFollow(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("stream", 1))
	ref := n.next().GetRef()
	sub, err := h.jobs.SubscribeLogs(ctxT(t), &cloudmlv1.SubscribeLogsRequest{JobId: job.GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for {
			m, err := sub.Recv()
			if err != nil {
				got <- b.String()
				return
			}
			b.Write(m.GetData())
		}
	}()

	st := n.logStream(ctxT(t))
	sendLogs(t, st, ref, 2, batch(1, "a\n"), batch(2, "b\n"))
	sendLogs(t, st, ref, 3, batch(2, "b\n"), batch(3, "c\n")) // 2 overlaps
	// Batches sent without waiting are acknowledged together.
	for seq, line := range []string{"d\n", "e\n", "f\n"} {
		if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref, Batches: []*cloudmlv1.LogBatch{batch(uint64(seq+4), line)}}); err != nil {
			t.Fatal(err)
		}
	}
	for acked := uint64(3); acked < 6; {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		acked = resp.GetAckedSeq()
	}
	// A gap ends the stream after storing what continues the sequence.
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref, Batches: []*cloudmlv1.LogBatch{batch(7, "g\n"), batch(9, "i\n")}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, endErr(st), codes.Unavailable)

	// The agent reopens and resends from its acknowledgement.
	st = n.logStream(ctxT(t))
	sendLogs(t, st, ref, 9, batch(7, "g\n"), batch(8, "h\n"), batch(9, "i\n"))
	if err := endErr(st); err != nil {
		t.Fatalf("clean end: %v", err)
	}
	if acked, err := h.c.store.AckedSeq(ref.GetJobId(), ref.GetTaskIndex(), ref.GetAttempt()); err != nil || acked != 9 {
		t.Errorf("durable acked seq = %d, %v; want 9", acked, err)
	}
	if err := n.report(ref, running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.report(ref, succeeded, 0, 9, nil); err != nil {
		t.Fatalf("terminal report after streamed logs: %v", err)
	}
	select {
	case text := <-got:
		if want := "a\nb\nc\nd\ne\nf\ng\nh\ni\n"; text != want {
			t.Errorf("subscriber got %q, want %q", text, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("follow did not end after the job ended")
	}
}

func TestStreamLogsRefusesStaleAndMixedAttempts(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	h.submit(gridSpec("stale", 2))
	a, b := n.next().GetRef(), n.next().GetRef()
	other := newAgent(t, h, 1)

	st := other.logStream(ctxT(t))
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: a, Batches: []*cloudmlv1.LogBatch{batch(1, "x\n")}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, endErr(st), codes.FailedPrecondition)

	st = n.logStream(ctxT(t))
	sendLogs(t, st, a, 1, batch(1, "x\n"))
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: b, Batches: []*cloudmlv1.LogBatch{batch(1, "y\n")}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, endErr(st), codes.InvalidArgument)
	if acked, err := h.c.store.AckedSeq(b.GetJobId(), b.GetTaskIndex(), b.GetAttempt()); err != nil || acked != 0 {
		t.Errorf("attempt %v acked %d, %v; want nothing stored", b, acked, err)
	}
}

// An agent that attaches to a running task after a restart asks how far
// the attempt's logs got: the answer counts each stream's stored bytes.
func TestStreamLogsProgressForAResumingAgent(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	h.submit(gridSpec("resume", 1))
	ref := n.next().GetRef()

	st := n.logStream(ctxT(t))
	// Nothing stored yet: the answer is all zeros, and it still comes.
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || resp.GetAckedSeq() != 0 || resp.GetStdoutBytes() != 0 || resp.GetStderrBytes() != 0 {
		t.Fatalf("progress of a new attempt = %v, %v", resp, err)
	}
	errBatch := batch(2, "oops\n")
	errBatch.Stream = cloudmlv1.LogStream_LOG_STREAM_STDERR
	sendLogs(t, st, ref, 3, batch(1, "a\nbb\n"), errBatch, batch(3, "ccc\n"))
	if err := endErr(st); err != nil {
		t.Fatal(err)
	}

	// The agent restarts and asks on a new stream.
	st = n.logStream(ctxT(t))
	if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil || resp.GetAckedSeq() != 3 || resp.GetStdoutBytes() != 9 || resp.GetStderrBytes() != 5 {
		t.Fatalf("progress = %v, %v; want acked 3, stdout 9 bytes, stderr 5", resp, err)
	}
	sendLogs(t, st, ref, 4, batch(4, "dddd\n"))
	if err := endErr(st); err != nil {
		t.Fatal(err)
	}
}
