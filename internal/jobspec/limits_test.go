package jobspec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func limitSpec() *cloudmlv1.JobSpec {
	return &cloudmlv1.JobSpec{Name: "lim", Command: []string{"true"}, Code: &cloudmlv1.Source{Url: "gs://b/code.tar.gz"}}
}

// values returns n grid values of w bytes each.
func values(n, w int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%0*d", w, i)
	}
	return out
}

// sizedSpec returns a spec whose encoding is exactly n bytes, padded with
// one grid value.
func sizedSpec(t *testing.T, n int) *cloudmlv1.JobSpec {
	t.Helper()
	s := limitSpec()
	s.Sweep = &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"x": {Values: []string{""}}}}
	for range 4 { // the value's length prefix may grow by a byte
		v := &s.Sweep.Grid["x"].Values[0]
		*v = strings.Repeat("a", len(*v)+n-proto.Size(s))
	}
	if got := proto.Size(s); got != n {
		t.Fatalf("spec of %d bytes, want %d", got, n)
	}
	return s
}

// TestLimits checks every limit at its value (accepted) and one past it
// (refused with a message that names it), with small limits.
func TestLimits(t *testing.T) {
	l := Limits{SpecBytes: 3000, EnvVars: 3, EnvKeyBytes: 8, EnvValueBytes: 10, EnvBytes: 25, Args: 3, CommandBytes: 12,
		DataSources: 2, Params: 2, ParamValueBytes: 5, Tasks: 12, SweepBytes: 200}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	env := func(n int, kv func(i int) (string, string)) func(*cloudmlv1.JobSpec) {
		return func(s *cloudmlv1.JobSpec) {
			s.Env = map[string]string{}
			for i := range n {
				k, v := kv(i)
				s.Env[k] = v
			}
		}
	}
	grid := func(vals ...[]string) func(*cloudmlv1.JobSpec) {
		return func(s *cloudmlv1.JobSpec) {
			s.Sweep = &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{}}
			for i, v := range vals {
				s.Sweep.Grid[string(rune('a'+i))] = &cloudmlv1.ParamValues{Values: v}
			}
		}
	}
	for _, tc := range []struct {
		name        string
		under, over func(*cloudmlv1.JobSpec)
		want        string
	}{
		{"env vars", env(3, func(i int) (string, string) { return fmt.Sprint("K", i), "" }),
			env(4, func(i int) (string, string) { return fmt.Sprint("K", i), "" }), "env: 4 variables, more than the limit of 3"},
		{"env key", env(1, func(int) (string, string) { return "ABCDEFGH", "" }),
			env(1, func(int) (string, string) { return "ABCDEFGHI", "" }), "env.ABCDEFGHI: name of 9 bytes, more than the limit of 8 bytes per env name"},
		{"env value", env(1, func(int) (string, string) { return "K", strings.Repeat("v", 10) }),
			env(1, func(int) (string, string) { return "K", strings.Repeat("v", 11) }), "env.K: value of 11 bytes, more than the limit of 10 bytes per env value"},
		{"env bytes", env(3, func(i int) (string, string) { return fmt.Sprint("K", i), strings.Repeat("v", 6+i/2) }),
			env(3, func(i int) (string, string) { return fmt.Sprint("K", i), strings.Repeat("v", 6+i/2+i/2) }), "env: 26 bytes of names and values, more than the limit of 25 bytes for all env variables"},
		{"args", func(s *cloudmlv1.JobSpec) { s.Command = []string{"a", "b", "c"} },
			func(s *cloudmlv1.JobSpec) { s.Command = []string{"a", "b", "c", "d"} }, "command: 4 arguments, more than the limit of 3"},
		{"command bytes", func(s *cloudmlv1.JobSpec) { s.Command = []string{"octave", "train."} },
			func(s *cloudmlv1.JobSpec) { s.Command = []string{"octave", "train.m"} }, "command: 13 bytes of arguments, more than the limit of 12 bytes per command"},
		{"data", func(s *cloudmlv1.JobSpec) {
			s.Data = map[string]*cloudmlv1.Source{"a": {Url: "gs://b/a"}, "b": {Url: "gs://b/b"}}
		},
			func(s *cloudmlv1.JobSpec) {
				s.Data = map[string]*cloudmlv1.Source{"a": {Url: "gs://b/a"}, "b": {Url: "gs://b/b"}, "c": {Url: "gs://b/c"}}
			}, "data: 3 inputs, more than the limit of 2"},
		{"params", grid([]string{"1"}, []string{"1"}), grid([]string{"1"}, []string{"1"}, []string{"1"}), "sweep: 3 parameters, more than the limit of 2"},
		{"param value", grid([]string{"12345"}), grid([]string{"1", "123456"}), "sweep.grid.a: value 1 is 6 bytes, more than the limit of 5 bytes per parameter value"},
		{"tasks", grid(values(3, 1), values(4, 1)), grid(values(13, 2)), "sweep: 13 tasks, more than the limit of 12"},
		// 12 tasks: 12 x (1 + 5) + 12 x (1 + 5) = 144; then 12 x (1+5) + 12 x (1 + 24) = 372.
		{"sweep bytes", grid(values(12, 5), []string{"12345"}), func(s *cloudmlv1.JobSpec) {
			grid(values(12, 5))(s)
			s.Sweep.Random = &cloudmlv1.RandomSweep{Count: 1, Params: map[string]*cloudmlv1.Range{"r": {Min: 0, Max: 1}}}
		}, "sweep: the tasks' parameters come to 372 bytes, more than the limit of 200 bytes for all tasks of a job (fewer tasks or shorter values)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := limitSpec()
			tc.under(under)
			if err := l.Check(under); err != nil {
				t.Errorf("at the limit: %v", err)
			}
			over := limitSpec()
			tc.over(over)
			err := l.Check(over)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("past the limit: %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestSpecBytesLimit checks the spec size alone: its padding value is
// larger than the parameter value limit of the small limits above.
func TestSpecBytesLimit(t *testing.T) {
	l := DefaultLimits()
	l.SpecBytes = 3000
	if err := l.Check(sizedSpec(t, 3000)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	want := "spec: 3001 bytes encoded, more than the limit of 3000 bytes per job spec"
	if err := l.Check(sizedSpec(t, 3001)); err == nil || err.Error() != want {
		t.Errorf("past the limit: %v, want %q", err, want)
	}
}

func TestSweepBytesMatchesExpansion(t *testing.T) {
	sw := &cloudmlv1.Sweep{
		Grid:   map[string]*cloudmlv1.ParamValues{"lr": {Values: []string{"0.1", "0.01", "1"}}, "layers": {Values: []string{"2", "16"}}},
		Random: &cloudmlv1.RandomSweep{Count: 3, Params: map[string]*cloudmlv1.Range{"seed": {Min: 0, Max: 1e9, Integer: true}}},
	}
	tasks, err := Expand(&cloudmlv1.JobSpec{Sweep: sw})
	if err != nil {
		t.Fatal(err)
	}
	var exact, bound int64
	for _, p := range tasks {
		for k, v := range p {
			exact += int64(len(k) + len(v))
			if k == "seed" {
				bound += int64(len(k) + randomValueBytes)
			} else {
				bound += int64(len(k) + len(v))
			}
		}
	}
	if got := SweepBytes(sw); got != bound || got < exact {
		t.Errorf("SweepBytes = %d, want %d (the expansion has %d)", got, bound, exact)
	}
}

// TestDefaultLimits: Validate (the client's check) allows a large real job
// and refuses the inputs that grew the coordinator's state by 90 MB and
// wedged a node.
func TestDefaultLimits(t *testing.T) {
	big := limitSpec()
	big.Env = map[string]string{"CONFIG": strings.Repeat("x", 64<<10)}
	big.Sweep = &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"lr": {Values: values(1000, 8)}, "seed": {Values: values(100, 3)}}}
	if err := Validate(big); err != nil {
		t.Errorf("a 100,000-task job with a 64 KiB env value: %v", err)
	}
	for name, tc := range map[string]struct {
		modify func(*cloudmlv1.JobSpec)
		want   string
	}{
		"5 MiB env value": {func(s *cloudmlv1.JobSpec) { s.Env = map[string]string{"X": strings.Repeat("x", 5<<20)} },
			"env.X: value of 5242880 bytes, more than the limit of 65536 bytes per env value"},
		"4 KiB value x 5000 tasks": {func(s *cloudmlv1.JobSpec) {
			s.Sweep = &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"big": {Values: []string{strings.Repeat("a", 4096)}}, "i": {Values: values(5000, 4)}}}
		}, "sweep: the tasks' parameters come to 20520000 bytes, more than the limit of 16777216 bytes"},
	} {
		s := limitSpec()
		tc.modify(s)
		if err := Validate(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	var l Limits
	if err := l.Validate(); err != nil || l != DefaultLimits() {
		t.Errorf("zero limits: %v, %+v", err, l)
	}
	l = Limits{EnvValueBytes: 1 << 20}
	if err := l.Validate(); err == nil || !strings.Contains(err.Error(), "env value bytes = 1048576: want 1..65536") {
		t.Errorf("raised limit: %v", err)
	}
	l = Limits{SweepBytes: -1}
	if err := l.Validate(); err == nil {
		t.Error("negative sweep bytes accepted")
	}
}

func TestFormatBytes(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1 << 10, 1 << 30, 16 << 30, 3 << 40, 1<<30 + 1} {
		s := FormatBytes(n)
		if got, err := ParseBytes(s); err != nil || got != n {
			t.Errorf("ParseBytes(FormatBytes(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
	if got := FormatBytes(16 << 30); got != "16Gi" {
		t.Errorf("FormatBytes(16 GiB) = %q", got)
	}
}
