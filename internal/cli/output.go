package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// printJSON writes a proto message as indented JSON with enum names.
func (a *App) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err = fmt.Fprintf(a.Stdout, "%s\n", b)
	return err
}

// printJSONList prints {"key": [messages...]}, each message encoded as
// printJSON does.
func printJSONList[M proto.Message](a *App, key string, ms []M) error {
	raws := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		b, err := protojson.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		raws[i] = b
	}
	out, err := json.MarshalIndent(map[string][]json.RawMessage{key: raws}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err = fmt.Fprintf(a.Stdout, "%s\n", out)
	return err
}

// eachArg runs do for every argument of a command that takes several
// (delete, image rm): each failure is reported without stopping the rest.
// In table mode text prints one line per success as it comes; with -o json
// the successes are printed at the end as {"key": [...]}.
func eachArg[R proto.Message](ctx context.Context, a *App, args []string, key string,
	do func(ctx context.Context, arg string) (R, error), text func(arg string, r R)) error {
	var done []R
	var errs []error
	for _, arg := range args {
		cctx, cancel := unary(ctx)
		r, err := do(cctx, arg)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r)
		if !a.json() {
			text(arg, r)
		}
	}
	if a.json() {
		if err := printJSONList(a, key, done); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

func (a *App) json() bool { return a.output == "json" }

// table starts an aligned table on stdout.
func (a *App) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// jobState is the short lower-case name of a job state.
func jobState(s cloudmlv1.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

func taskState(s cloudmlv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

func nodeState(s cloudmlv1.NodeState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATE_"))
}

// since renders a timestamp as an age ("12s ago"), or "-".
func since(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	d := time.Since(ts.AsTime()).Round(time.Second)
	return d.String() + " ago"
}

// duration renders the time between two timestamps, or since start if end is nil.
func duration(start, end *timestamppb.Timestamp) string {
	if start == nil {
		return "-"
	}
	e := time.Now()
	if end != nil {
		e = end.AsTime()
	}
	return e.Sub(start.AsTime()).Round(100 * time.Millisecond).String()
}

// kv renders a map as "a=1 b=2" in key order.
func kv[V any](m map[string]V, format func(V) string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + format(m[k])
	}
	return strings.Join(parts, " ")
}

func str(s string) string { return s }

func num(f float64) string { return fmt.Sprintf("%.6g", f) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
