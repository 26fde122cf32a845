package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/internal/metricjson"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func (a *App) json() bool { return a.output == outJSON }
func (a *App) wide() bool { return a.output == outWide }

// marshalJSON renders a proto message as indented JSON with enum names.
// It is indented by encoding/json: protojson varies its whitespace from
// build to build on purpose, and scripts may compare outputs.
func marshalJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// printJSON writes a proto message as indented JSON.
func (a *App) printJSON(m proto.Message) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	_, err = a.Stdout.Write(b)
	return err
}

// printJSONList prints {"key": [messages...]}.
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
		r, err := do(ctx, arg)
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

// table is an aligned table that is written when flushed.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer) table {
	return table{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
}

func (t table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t table) flush() error { return t.tw.Flush() }

// render runs print into a buffer.
func render(print func(w io.Writer) error) ([]byte, error) {
	var buf bytes.Buffer
	err := print(&buf)
	return buf.Bytes(), err
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

func stageState(s cloudmlv1.StageState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STAGE_STATE_"))
}

// jobEnded reports whether a job reached a final state.
func jobEnded(s cloudmlv1.JobState) bool {
	return s == cloudmlv1.JobState_JOB_STATE_SUCCEEDED || s == cloudmlv1.JobState_JOB_STATE_FAILED ||
		s == cloudmlv1.JobState_JOB_STATE_CANCELLED
}

func taskEnded(s cloudmlv1.TaskState) bool {
	return s == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || s == cloudmlv1.TaskState_TASK_STATE_FAILED ||
		s == cloudmlv1.TaskState_TASK_STATE_CANCELLED
}

// plural is "1 task", "2 tasks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// since renders a timestamp as an age ("12s ago"), or "-".
func since(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return human(time.Since(ts.AsTime())) + " ago"
}

// human renders a duration to the precision that matters at its size:
// 42s, 5m12s, 3h20m, 12d.
func human(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
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
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+format(m[k]))
	}
	return strings.Join(parts, " ")
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func str(s string) string { return s }

// num renders a metric: NaN and the infinities as metrics.json writes them
// ("NaN", "Infinity", "-Infinity"), a number in at most 6 digits.
func num(f float64) string {
	switch {
	case math.IsNaN(f):
		return metricjson.NaN
	case math.IsInf(f, 1):
		return metricjson.PosInf
	case math.IsInf(f, -1):
		return metricjson.NegInf
	}
	return fmt.Sprintf("%.6g", f)
}

func count(n int32) string { return strconv.Itoa(int(n)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// shortID is the first 12 hex digits of an image id, as docker prints it.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// nodeNames maps node ids to "node-1 (hostname)".
type nodeNames map[string]string

func namesOf(nodes []*cloudmlv1.Node) nodeNames {
	m := nodeNames{}
	for _, n := range nodes {
		m[n.GetId()] = nodeLabel(n.GetId(), n)
	}
	return m
}

// nodeLabel is "node-1 (hostname)", or the id when the node is unknown.
func nodeLabel(id string, n *cloudmlv1.Node) string {
	if n == nil || n.GetHostname() == "" || n.GetHostname() == id {
		return id
	}
	return id + " (" + n.GetHostname() + ")"
}

func (m nodeNames) name(id string) string {
	if id == "" {
		return "-"
	}
	if l, ok := m[id]; ok {
		return l
	}
	return id
}
