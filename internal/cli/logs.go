package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// defaultReconnect is how long logs -f waits for a coordinator that went away.
const defaultReconnect = 5 * time.Minute

// logFlags are logs' own flags.
type logFlags struct {
	follow    bool
	task      int
	reconnect time.Duration
}

func (a *App) logsCmd() *cobra.Command {
	f := logFlags{}
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's output (-f to follow until it ends; --task N for one task)",
		Long: `Logs prints a job's output, each line prefixed by its task index ("[3]", or
"[3#2]" for attempt 2); stderr lines go to stderr. With --task N only that
task's lines are printed, without prefix. With -o json each line is a JSON
object {"task","attempt","stream","line"} on stdout.

With -f it follows the job until it ends and exits 0 if the job succeeded,
3 if it failed, 4 if it was cancelled. It outlives a coordinator restart:
it reconnects for up to --reconnect and resumes after the last line it
printed, so every line shows exactly once.`,
		Example: `  cloudml-client logs -f linreg-3f9a1c
  cloudml-client logs linreg-3f9a1c --task 3
  cloudml-client logs -f linreg-3f9a1c -o json`,
		Args:              oneJob,
		ValidArgsFunction: a.completeJobs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.followLogs(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.follow, "follow", "f", false, "follow until the job ends")
	fl.IntVar(&f.task, "task", -1, "only this task index, printed without prefix")
	fl.DurationVar(&f.reconnect, "reconnect", defaultReconnect, "how long to keep trying to reach a coordinator that went away\n"+
		"(it restarted, or the network broke); the stream resumes where it stopped. 0 gives up at once")
	return cmd
}

// followLogs prints a job's logs; with follow, it returns the job's exit.
func (a *App) followLogs(ctx context.Context, id string, f logFlags) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	out := bufio.NewWriterSize(a.Stdout, 256<<10)
	errOut := bufio.NewWriterSize(a.Stderr, 16<<10)
	defer out.Flush()
	defer errOut.Flush()
	opts := client.LogOptions{Follow: f.follow, Reconnect: f.reconnect, OnDisconnect: func(err error) {
		fmt.Fprintf(errOut, "lost the coordinator (%s); reconnecting for up to %s\n", status.Convert(err).Message(), f.reconnect)
		errOut.Flush()
	}}
	if f.task >= 0 {
		opts.OneTask, opts.Task = true, int32(f.task)
	}
	p := linePrinter{prefix: !opts.OneTask, json: a.json(), scratch: new([]byte)}
	final, err := c.Logs(ctx, id, opts, func(msg *cloudmlv1.SubscribeLogsResponse) error {
		w := out
		if msg.GetStream() == cloudmlv1.LogStream_LOG_STREAM_STDERR && !p.json {
			w = errOut
		}
		if err := p.write(w, msg); err != nil {
			return err
		}
		// One flush per message (a batch of lines), so stdout and stderr
		// interleave as they arrive without a syscall per line.
		return w.Flush()
	})
	if errors.Is(err, client.ErrGaveUp) {
		return fmt.Errorf("%w (raise --reconnect to wait longer)", err)
	}
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if !f.follow {
		return nil
	}
	switch final {
	case cloudmlv1.JobState_JOB_STATE_SUCCEEDED:
		return nil
	case cloudmlv1.JobState_JOB_STATE_FAILED:
		fmt.Fprintf(errOut, "job %s failed (see 'cloudml-client status %s')\n", id, id)
	case cloudmlv1.JobState_JOB_STATE_CANCELLED:
		fmt.Fprintf(errOut, "job %s was cancelled\n", id)
	default:
		return fmt.Errorf("log stream of %s ended before the job did (state %s)", id, jobState(final))
	}
	return exitFor(final)
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
	data := msg.GetData()
	if !p.prefix && !p.json {
		_, err := w.Write(data)
		return err
	}
	pre := []byte("[" + strconv.Itoa(int(msg.GetTaskIndex())))
	if msg.GetAttempt() > 1 {
		pre = append(pre, '#')
		pre = strconv.AppendInt(pre, int64(msg.GetAttempt()), 10)
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
		if err := enc.Encode(jsonLine{msg.GetTaskIndex(), msg.GetAttempt(), streamName(msg.GetStream()), string(bytes.TrimSuffix(line, []byte("\n")))}); err != nil {
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
