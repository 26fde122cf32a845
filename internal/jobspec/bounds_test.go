package jobspec

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestParseBounds checks each number the decoder reads at its bounds: the
// extreme value is read as written, one past it is refused with the field's
// line.
func TestParseBounds(t *testing.T) {
	const head = "name: a\ncommand: [x]\n" // lines 1-2
	random := func(seed string) string {
		return head + "sweep: {random: {seed: " + seed + ", count: 1, params: {x: {min: 0, max: 1}}}}\n"
	}
	for _, tc := range []struct {
		name, yaml string
		got        func(*cloudmlv1.JobSpec) int64
		want       int64  // when err is ""
		err        string // the whole error
	}{
		{"largest int32", head + "parallelism: 2147483647\n",
			func(s *cloudmlv1.JobSpec) int64 { return int64(s.Parallelism) }, math.MaxInt32, ""},
		{"past int32", head + "parallelism: 2147483648\n", nil, 0,
			`cloudml.yaml:3: field "parallelism": 2147483648 is out of range [-2147483648, 2147483647]`},
		{"past negative int32", head + "retries: -2147483649\n", nil, 0,
			`cloudml.yaml:3: field "retries": -2147483649 is out of range [-2147483648, 2147483647]`},
		{"smallest seed", random("-9223372036854775808"),
			func(s *cloudmlv1.JobSpec) int64 { return s.Sweep.Random.Seed }, math.MinInt64, ""},
		{"largest seed", random("9223372036854775807"),
			func(s *cloudmlv1.JobSpec) int64 { return s.Sweep.Random.Seed }, math.MaxInt64, ""},
		// The largest float64 below 2^63 bytes, then 2^63 bytes.
		{"largest memory", head + "resources: {memory: 9223372036854774784}\n",
			func(s *cloudmlv1.JobSpec) int64 { return s.Resources.MemoryBytes }, 9223372036854774784, ""},
		{"memory of 2^63 bytes", head + "resources: {memory: 8388608Ti}\n", nil, 0,
			`cloudml.yaml:3: field "resources.memory": "8388608Ti" is too large`},
		// The largest float64 number of seconds below 2^63 ns, then 2^63 ns
		// (math.MaxInt64 ns rounds to it) and 10^19 ns.
		{"largest timeout", head + "timeout: 9.223372036854774e+09\n",
			func(s *cloudmlv1.JobSpec) int64 { return int64(s.Timeout.AsDuration()) }, 9223372036854774784, ""},
		{"timeout of 2^63 ns", head + "timeout: 9223372036.854775807\n", nil, 0,
			`cloudml.yaml:3: field "timeout": want a duration like "10m" or a number of seconds, got "9223372036.854775807"`},
		{"timeout of 1e19 ns", head + "timeout: 1e10\n", nil, 0,
			`cloudml.yaml:3: field "timeout": want a duration like "10m" or a number of seconds, got "1e10"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse([]byte(tc.yaml), "cloudml.yaml")
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != tc.err {
					t.Fatalf("Parse = %v\nwant %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tc.got(spec); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestParseErrorLines checks the error line of unknown fields (with and
// without a suggestion) and of YAML errors that yaml.v3 reports without a
// line or on the line before, which are found by parsing ever longer
// prefixes, the whole document included, of documents up to 1,000 lines.
func TestParseErrorLines(t *testing.T) {
	const head = "name: a\ncommand: [x]\n" // lines 1-2
	const noAnchor = `cloudml.yaml:3: bad YAML: unknown anchor 'b' referenced`
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"two edits from a field", head + "namexy: a\n", `cloudml.yaml:3: unknown field "namexy" (did you mean "name"?)`},
		{"three edits from a field", head + "nameabc: a\n", `cloudml.yaml:3: unknown field "nameabc"`},
		{"as near two fields: the first known", head + "sweep: {random: {count: 1, params: {x: {mix: 1}}}}\n",
			`cloudml.yaml:3: unknown field "mix" in sweep.random.params.x (did you mean "min"?)`},
		{"no line from yaml, last line without newline", head + "x: *b", noAnchor},
		{"yaml's line 2, last line without newline", head + "sweep: [1, 2", `cloudml.yaml:3: bad YAML: did not find expected ',' or ']'`},
		{"no line from yaml, 1,000 lines", head + "x: *b\n" + strings.Repeat("#\n", 996), noAnchor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "cloudml.yaml")
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestParamEnvNameEdges(t *testing.T) {
	// The ends of A-Z and 0-9 are kept; their neighbours @ [ / : are not.
	if got, want := ParamEnvName("azAZ09_@[/:"), "CLOUDML_PARAM_AZAZ09_____"; got != want {
		t.Errorf("ParamEnvName = %q, want %q", got, want)
	}
}

// TestLimitsEdges checks, each with one limit lowered, the limits TestLimits
// leaves at one side: a parameter name at the limit, grid and random
// parameters counted together, the parameters of all tasks at the limit.
func TestLimitsEdges(t *testing.T) {
	rnd := func(names ...string) *cloudmlv1.RandomSweep {
		r := &cloudmlv1.RandomSweep{Count: 1, Params: map[string]*cloudmlv1.Range{}}
		for _, n := range names {
			r.Params[n] = &cloudmlv1.Range{Min: 0, Max: 1}
		}
		return r
	}
	grid := func(name string, vals ...string) map[string]*cloudmlv1.ParamValues {
		return map[string]*cloudmlv1.ParamValues{name: {Values: vals}}
	}
	for _, tc := range []struct {
		name        string
		l           Limits
		under, over *cloudmlv1.Sweep
		want        string
	}{
		{"params", Limits{Params: 2},
			&cloudmlv1.Sweep{Grid: grid("a", "1"), Random: rnd("r")},
			&cloudmlv1.Sweep{Grid: grid("a", "1"), Random: rnd("r", "s")},
			"sweep: 3 parameters, more than the limit of 2"},
		{"param name", Limits{ParamValueBytes: 5},
			&cloudmlv1.Sweep{Grid: grid("abcde", "1")},
			&cloudmlv1.Sweep{Grid: grid("abcdef", "1")},
			"sweep: parameter name of 6 bytes, more than the limit of 5 bytes per parameter value"},
		// 10 tasks: 10 x len("a") + 10 values of 19 bytes = 200, then 201.
		{"sweep bytes", Limits{SweepBytes: 200},
			&cloudmlv1.Sweep{Grid: grid("a", values(10, 19)...)},
			&cloudmlv1.Sweep{Grid: grid("a", append(values(9, 19), strings.Repeat("9", 20))...)},
			"sweep: the tasks' parameters come to 201 bytes, more than the limit of 200 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.l.Validate(); err != nil {
				t.Fatal(err)
			}
			under := limitSpec()
			under.Sweep = tc.under
			if err := tc.l.Check(under); err != nil {
				t.Errorf("at the limit: %v", err)
			}
			over := limitSpec()
			over.Sweep = tc.over
			if err := tc.l.Check(over); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("past the limit: %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestZeroTimeout(t *testing.T) {
	s := &cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Timeout: durationpb.New(0)}
	if err := Validate(s); err != nil {
		t.Errorf("Validate(timeout 0): %v", err)
	}
}

// TestTaskCountOverflow multiplies up to exactly the largest product that
// fits: grids of 8 x 25 x 13 x 41 x 61 x 1321 = 2^33 + 8 values, which is
// math.MaxInt64 / (2^30 - 1), by a random count of 2^30 - 1 (2^63 - 8
// tasks); a count of 2^30 does not fit.
func TestTaskCountOverflow(t *testing.T) {
	sw := &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{}, Random: &cloudmlv1.RandomSweep{}}
	for i, n := range []int{8, 25, 13, 41, 61, 1321} {
		sw.Grid[string(rune('a'+i))] = &cloudmlv1.ParamValues{Values: make([]string, n)}
	}
	for _, tc := range []struct {
		count int32
		want  int64
	}{
		{1<<30 - 1, math.MaxInt64 - 7},
		{1 << 30, math.MaxInt64},
	} {
		sw.Random.Count = tc.count
		if got := TaskCount(sw); got != tc.want {
			t.Errorf("TaskCount(count %d) = %d, want %d", tc.count, got, tc.want)
		}
	}
}
