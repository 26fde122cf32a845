package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func (a *App) logs(ctx context.Context, args []string) error {
	fs := a.newFlags("logs", "cloudml-client logs [-f] [--task N] JOB: a job's output, each line prefixed by its task index\n"+
		"(\"[3]\", or \"[3#2]\" for attempt 2). With -f it follows until the job ends and exits\n"+
		"0 if the job succeeded, 3 if it failed, 4 if it was cancelled. stderr lines go to stderr.")
	follow := fs.Bool("f", false, "follow until the job ends")
	task := fs.Int("task", -1, "only this task index, printed without prefix")
	reconnect := fs.Duration("reconnect", 5*time.Minute, "how long to keep trying to reach a coordinator that went away\n"+
		"(it restarted, or the network broke); the stream resumes where it stopped. 0 gives up at once")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneJobArg("logs", pos)
	if err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	req := &cloudmlv1.SubscribeLogsRequest{JobId: id, Follow: *follow}
	if *task >= 0 {
		req.TaskIndex, req.HasTask = int32(*task), true
	}
	out := bufio.NewWriterSize(a.Stdout, 256<<10)
	errOut := bufio.NewWriterSize(a.Stderr, 16<<10)
	defer out.Flush()
	defer errOut.Flush()
	r := logReader{req: req, printer: linePrinter{prefix: !req.HasTask, json: a.json(), scratch: new([]byte)},
		out: out, errOut: errOut, read: map[[2]int32]uint64{}}
	final, err := r.run(ctx, a.jobs, *reconnect)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", id, err)
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if !*follow {
		return nil
	}
	switch final {
	case cloudmlv1.JobState_JOB_STATE_SUCCEEDED:
		return nil
	case cloudmlv1.JobState_JOB_STATE_FAILED:
		fmt.Fprintf(errOut, "job %s failed (see 'cloudml-client status %s')\n", id, id)
		return exitError{ExitJobFailed}
	case cloudmlv1.JobState_JOB_STATE_CANCELLED:
		fmt.Fprintf(errOut, "job %s was cancelled\n", id)
		return exitError{ExitJobCancelled}
	default:
		return fmt.Errorf("log stream of %s ended before the job did (state %s)", id, jobState(final))
	}
}

// logReader reads a job's log stream and, when the stream breaks because
// the coordinator went away, opens it again after what it printed.
type logReader struct {
	req         *cloudmlv1.SubscribeLogsRequest
	printer     linePrinter
	out, errOut *bufio.Writer
	read        map[[2]int32]uint64 // the last seq printed of each attempt
}

// run prints the stream until it ends and returns the job's final state
// (unspecified without -f). Once the stream has worked, Unavailable errors
// are retried with backoff for up to reconnect since it last worked; a
// coordinator that never answered is an error at once.
func (r *logReader) run(ctx context.Context, jobs cloudmlv1.JobServiceClient, reconnect time.Duration) (cloudmlv1.JobState, error) {
	delay, lost, worked := 200*time.Millisecond, time.Time{}, false
	for {
		final, progressed, err := r.once(ctx, jobs)
		if err == nil {
			return final, nil
		}
		if progressed {
			delay, lost, worked = 200*time.Millisecond, time.Time{}, true
		}
		if !worked || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return 0, err
		}
		if lost.IsZero() {
			lost = time.Now()
			fmt.Fprintf(r.errOut, "lost the coordinator (%s); reconnecting for up to %s\n", status.Convert(err).Message(), reconnect)
			r.errOut.Flush()
		}
		if time.Since(lost)+delay > reconnect {
			return 0, fmt.Errorf("%w (gave up after %s; raise --reconnect to wait longer)", err, reconnect)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// once opens the stream after what was printed and prints it to its end.
// progressed says whether anything arrived.
func (r *logReader) once(ctx context.Context, jobs cloudmlv1.JobServiceClient) (final cloudmlv1.JobState, progressed bool, err error) {
	req := proto.CloneOf(r.req)
	for k, seq := range r.read {
		req.After = append(req.After, &cloudmlv1.LogPosition{TaskIndex: k[0], Attempt: k[1], Seq: seq})
	}
	stream, err := jobs.SubscribeLogs(ctx, req)
	if err != nil {
		return 0, false, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return final, progressed, nil
		}
		if err != nil {
			return 0, progressed, err
		}
		progressed = true
		if msg.JobState != cloudmlv1.JobState_JOB_STATE_UNSPECIFIED {
			final = msg.JobState
		}
		if len(msg.Data) == 0 {
			continue
		}
		w := r.out
		if msg.Stream == cloudmlv1.LogStream_LOG_STREAM_STDERR && !r.printer.json {
			w = r.errOut
		}
		if err := r.printer.write(w, msg); err != nil {
			return 0, progressed, err
		}
		// One flush per message (a batch of lines), so stdout and stderr
		// interleave as they arrive without a syscall per line.
		if err := w.Flush(); err != nil {
			return 0, progressed, err
		}
		if msg.Seq > 0 {
			r.read[[2]int32{msg.TaskIndex, msg.Attempt}] = msg.Seq
		}
	}
}

// linePrinter writes chunks of whole lines, prefixing each with its task.
type linePrinter struct {
	prefix bool
	json   bool
	// scratch, if set, is reused to assemble a message's prefixed lines.
	scratch *[]byte
}

type jsonLine struct {
	Task    int32  `json:"task"`
	Attempt int32  `json:"attempt"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
}

func (p linePrinter) write(w *bufio.Writer, msg *cloudmlv1.SubscribeLogsResponse) error {
	data := msg.Data
	if !p.prefix && !p.json {
		_, err := w.Write(data)
		return err
	}
	pre := []byte("[" + strconv.Itoa(int(msg.TaskIndex)))
	if msg.Attempt > 1 {
		pre = append(pre, '#')
		pre = strconv.AppendInt(pre, int64(msg.Attempt), 10)
	}
	pre = append(pre, "] "...)
	if !p.json {
		// One Write per message, not two per line.
		var out []byte
		if p.scratch != nil {
			out = (*p.scratch)[:0]
		}
		for line := range bytes.Lines(data) {
			out = append(append(out, pre...), line...)
		}
		if p.scratch != nil {
			*p.scratch = out
		}
		_, err := w.Write(out)
		return err
	}
	enc := json.NewEncoder(w)
	for line := range bytes.Lines(data) {
		if err := enc.Encode(jsonLine{msg.TaskIndex, msg.Attempt, streamName(msg.Stream), string(bytes.TrimSuffix(line, []byte("\n")))}); err != nil {
			return err
		}
	}
	return nil
}

func streamName(s cloudmlv1.LogStream) string {
	if s == cloudmlv1.LogStream_LOG_STREAM_STDERR {
		return "stderr"
	}
	return "stdout"
}
