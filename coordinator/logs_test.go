package coordinator

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func batch(seq uint64, data string) *cloudmlv1.LogBatch {
	return &cloudmlv1.LogBatch{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(data)}
}

// readAll reads a SubscribeLogs stream to its end.
func readAll(t *testing.T, stream cloudmlv1.JobService_SubscribeLogsClient) ([]*cloudmlv1.SubscribeLogsResponse, cloudmlv1.JobState) {
	t.Helper()
	var msgs []*cloudmlv1.SubscribeLogsResponse
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SubscribeLogs: %v", err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		t.Fatal("SubscribeLogs sent nothing")
	}
	last := msgs[len(msgs)-1]
	if last.GetJobState() == cloudmlv1.JobState_JOB_STATE_UNSPECIFIED || len(last.GetData()) > 0 {
		t.Fatalf("last message %v does not carry the job state alone", last)
	}
	return msgs[:len(msgs)-1], last.GetJobState()
}

// jobLogs reads job id's stored logs to their end, without following.
func (h *harness) jobLogs(id string) ([]*cloudmlv1.SubscribeLogsResponse, cloudmlv1.JobState) {
	h.t.Helper()
	stream, err := h.jobs.SubscribeLogs(ctxT(h.t), &cloudmlv1.SubscribeLogsRequest{JobId: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return readAll(h.t, stream)
}

// dataOf is the messages' data, in order.
func dataOf(msgs []*cloudmlv1.SubscribeLogsResponse) string {
	var b strings.Builder
	for _, m := range msgs {
		b.Write(m.GetData())
	}
	return b.String()
}

func TestPublishLogsDupGapAndTerminalWaitsForLogs(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("logs", 1))
	as := n.next()
	ref := as.GetRef()
	steps := []struct {
		batches []*cloudmlv1.LogBatch
		want    uint64
	}{
		{[]*cloudmlv1.LogBatch{batch(1, "a\n"), batch(2, "b\n")}, 2},
		{[]*cloudmlv1.LogBatch{batch(2, "b\n"), batch(3, "c\n")}, 3}, // 2 is a duplicate
		{[]*cloudmlv1.LogBatch{batch(5, "e\n")}, 3},                  // gap: nothing stored
		{[]*cloudmlv1.LogBatch{batch(4, "d\n"), batch(6, "f\n")}, 4}, // stops at the gap
		{nil, 4},
	}
	for i, s := range steps {
		got, err := n.publish(ref, s.batches...)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != s.want {
			t.Errorf("step %d: acked %d, want %d", i, got, s.want)
		}
	}
	if err := n.report(ref, running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	err := n.report(ref, succeeded, 0, 5, nil)
	wantCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "logs incomplete: have 4 of 5") {
		t.Errorf("error %q does not say logs incomplete: have 4 of 5", err)
	}
	if _, err := n.publish(ref, batch(5, "e\n")); err != nil {
		t.Fatal(err)
	}
	if err := n.report(ref, succeeded, 0, 5, nil); err != nil {
		t.Fatalf("terminal report after the logs: %v", err)
	}
	msgs, state := h.jobLogs(job.GetId())
	if text := dataOf(msgs); text != "a\nb\nc\nd\ne\n" {
		t.Errorf("stored logs = %q, want a..e once each", text)
	}
	if len(msgs) != 5 {
		t.Errorf("got %d messages, want one per batch (5)", len(msgs))
	}
	if state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("final state = %v", state)
	}
}

func TestSubscribeLogsFollow(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("follow", 2))
	stream, err := h.jobs.SubscribeLogs(ctxT(t), &cloudmlv1.SubscribeLogsRequest{JobId: job.GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	type out struct {
		msgs  []*cloudmlv1.SubscribeLogsResponse
		state cloudmlv1.JobState
	}
	done := make(chan out, 1)
	go func() {
		var o out
		for {
			m, err := stream.Recv()
			if err != nil {
				done <- o
				return
			}
			if m.GetJobState() != cloudmlv1.JobState_JOB_STATE_UNSPECIFIED {
				o.state = m.GetJobState()
				continue
			}
			o.msgs = append(o.msgs, m)
		}
	}()
	as := []*cloudmlv1.Assignment{n.next(), n.next()}
	const batches = 50
	for seq := uint64(1); seq <= batches; seq++ {
		for _, a := range as {
			if _, err := n.publish(a.GetRef(), batch(seq, fmt.Sprintf("t%d line %d\n", a.GetRef().GetTaskIndex(), seq))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range as {
		if err := n.report(a.GetRef(), succeeded, 0, batches, nil); err != nil {
			t.Fatal(err)
		}
	}
	var o out
	select {
	case o = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("follow did not end after the job ended")
	}
	if o.state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("final state = %v, want succeeded", o.state)
	}
	got := map[int32][]string{}
	for _, m := range o.msgs {
		got[m.GetTaskIndex()] = append(got[m.GetTaskIndex()], string(m.GetData()))
	}
	for task := int32(0); task < 2; task++ {
		var want []string
		for seq := 1; seq <= batches; seq++ {
			want = append(want, fmt.Sprintf("t%d line %d\n", task, seq))
		}
		if diff := cmp.Diff(want, got[task]); diff != "" {
			t.Errorf("task %d lines (-want +got):\n%s", task, diff)
		}
	}
}

// TestLogThroughput stores and fans out a 1,000,000-line task in ~512 KiB
// batches, every byte once. It logs the time taken; the speed itself is
// measured by make bench, not asserted here.
func TestLogThroughput(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("loud", 1))
	as := n.next()
	var all bytes.Buffer
	for i := range 1_000_000 {
		fmt.Fprintf(&all, "%06d\n", i)
	}
	data := all.Bytes()
	const size = 512 << 10
	var batches []*cloudmlv1.LogBatch
	for off := 0; off < len(data); {
		end := min(off+size, len(data))
		for end < len(data) && data[end-1] != '\n' {
			end++
		}
		batches = append(batches, &cloudmlv1.LogBatch{Seq: uint64(len(batches) + 1), Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: data[off:end]})
		off = end
	}
	stream, err := h.jobs.SubscribeLogs(ctxT(t), &cloudmlv1.SubscribeLogsRequest{JobId: job.GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan int, 1)
	go func() {
		total := 0
		for {
			m, err := stream.Recv()
			if err != nil {
				received <- total
				return
			}
			total += len(m.GetData())
		}
	}()
	begin := time.Now()
	for _, b := range batches {
		if _, err := n.publish(as.GetRef(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.report(as.GetRef(), succeeded, 0, uint64(len(batches)), nil); err != nil {
		t.Fatal(err)
	}
	total := <-received
	elapsed := time.Since(begin)
	t.Logf("stored and streamed %d bytes in %d batches in %v", total, len(batches), elapsed)
	if total != len(data) {
		t.Errorf("subscriber got %d bytes, want %d", total, len(data))
	}
}

// TestLogsRideTheEndReport: batches carried by a report (log_batches) are
// stored durably before the report is applied, once however often the
// report is retried; a report whose batches are refused is not applied.
func TestLogsRideTheEndReport(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	if !n.started.GetReportLogs() {
		t.Fatal("SessionStarted does not offer report_logs")
	}
	job := h.submit(gridSpec("ride", 1))
	ref := n.next().GetRef()
	if err := n.report(ref, running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	end := func(last uint64, batches ...*cloudmlv1.LogBatch) error {
		resp, err := n.client.ReportTasks(ctxT(t), &cloudmlv1.ReportTasksRequest{Reports: []*cloudmlv1.ReportTaskRequest{{
			Ref: ref, State: succeeded, LastLogSeq: last, LogBatches: batches,
		}}})
		if err != nil {
			return err
		}
		r := resp.GetResults()[0]
		return status.Error(codes.Code(r.GetCode()), r.GetMessage())
	}
	taskState := func() cloudmlv1.TaskState {
		return h.job(job.GetId()).GetTasks()[ref.GetTaskIndex()].GetState()
	}

	// Refused batches leave the attempt running and store nothing.
	wantCode(t, end(1, batch(1, strings.Repeat("x", DefaultLimits().LogCallBytes)+"\n")), codes.ResourceExhausted)
	wantCode(t, end(2, batch(2, "b\n")), codes.Unavailable) // a gap before 2: logs incomplete
	if got := taskState(); got != running {
		t.Fatalf("after refused reports the task is %v, want RUNNING", got)
	}
	other := newAgent(t, h, 1)
	other.open()
	_, err := other.client.ReportTasks(ctxT(t), &cloudmlv1.ReportTasksRequest{Reports: []*cloudmlv1.ReportTaskRequest{{
		Ref: ref, State: succeeded, LastLogSeq: 1, LogBatches: []*cloudmlv1.LogBatch{batch(1, "not mine\n")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if acked := h.c.ackedSeq(refFromProto(ref)); acked != 0 {
		t.Fatalf("another node's carried batch was stored (acked %d)", acked)
	}

	// The end with its batches, then the same report again (a lost answer).
	for try := range 2 {
		if err := end(2, batch(1, "a\n"), batch(2, "b\n")); err != nil {
			t.Fatalf("end report try %d: %v", try, err)
		}
	}
	if got := taskState(); got != succeeded {
		t.Fatalf("task is %v after its end report, want SUCCEEDED", got)
	}
	msgs, _ := h.jobLogs(job.GetId())
	if text := dataOf(msgs); text != "a\nb\n" {
		t.Errorf("stored logs = %q, want %q: each carried batch once", text, "a\nb\n")
	}
}

// TestCarriedEndRepeatedAfterARetryBegan: an end report that carried logs,
// sent again after the task's next attempt began (its answer was lost), is
// acknowledged as the same end, not refused for its logs.
func TestCarriedEndRepeatedAfterARetryBegan(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	spec := gridSpec("retry", 1)
	spec.Retries = 1
	h.submit(spec)
	ref := n.next().GetRef()
	failed := &cloudmlv1.ReportTaskRequest{
		Ref: ref, State: cloudmlv1.TaskState_TASK_STATE_FAILED, ExitCode: 1, LastLogSeq: 1,
		LogBatches: []*cloudmlv1.LogBatch{batch(1, "boom\n")},
	}
	if _, err := n.client.ReportTask(ctxT(t), failed); err != nil {
		t.Fatal(err)
	}
	if next := n.next().GetRef(); next.GetAttempt() != 2 {
		t.Fatalf("next assignment %v, want attempt 2", next)
	}
	if _, err := n.client.ReportTask(ctxT(t), failed); err != nil {
		t.Fatalf("the same end again, after attempt 2 began: %v", err)
	}
}
