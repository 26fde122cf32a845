package jobspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const fullSpec = `# a full cloudml.yaml
name: LinReg
image: cloudml/octave:7
code: .
data:
  train: gs://bucket/data/train.csv
  test: ./data/test.csv
command: ["octave-cli", "train.m"]
env: {FOO: bar, N: 3, ON: true, EMPTY: }
sweep:
  grid:
    lr: [0.010, 0.03, 1e-1]
    lambda: [0, 0.1]
  random:
    seed: 42
    count: 8
    params:
      dropout: {min: 0.001, max: 0.3, log: true}
      epochs: {min: 10, max: 100, integer: true}
parallelism: 4
retries: 1
timeout: 10m
output: gs://bucket/prefix
objective: {metric: val_mse, goal: maximize}
resources: {cpus: 1.5, memory: 512Mi}
`

func TestParseFull(t *testing.T) {
	got, err := Parse([]byte(fullSpec), "cloudml.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &cloudmlv1.JobSpec{
		Name:  "linreg",
		Image: "cloudml/octave:7",
		Code:  &cloudmlv1.Source{Url: "."},
		Data: map[string]*cloudmlv1.Source{
			"train": {Url: "gs://bucket/data/train.csv"},
			"test":  {Url: "./data/test.csv"},
		},
		Command: []string{"octave-cli", "train.m"},
		Env:     map[string]string{"FOO": "bar", "N": "3", "ON": "true", "EMPTY": ""},
		Sweep: &cloudmlv1.Sweep{
			Grid: map[string]*cloudmlv1.ParamValues{
				"lr":     {Values: []string{"0.010", "0.03", "1e-1"}},
				"lambda": {Values: []string{"0", "0.1"}},
			},
			Random: &cloudmlv1.RandomSweep{
				Seed:  42,
				Count: 8,
				Params: map[string]*cloudmlv1.Range{
					"dropout": {Min: 0.001, Max: 0.3, Log: true},
					"epochs":  {Min: 10, Max: 100, Integer: true},
				},
			},
		},
		Parallelism: 4,
		Retries:     1,
		Timeout:     durationpb.New(10 * time.Minute),
		Output:      "gs://bucket/prefix",
		Objective:   &cloudmlv1.Objective{Metric: "val_mse", Maximize: true},
		Resources:   &cloudmlv1.Resources{Cpus: 1.5, MemoryBytes: 512 << 20},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	tasks, err := Expand(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 3*2*8 {
		t.Errorf("Expand gave %d tasks, want 48", len(tasks))
	}
}

func TestParseForms(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       *cloudmlv1.JobSpec
	}{
		{"command string with quotes", `{name: a, command: "octave-cli --eval 'disp(1); x = \"a b\"'  train.m"}`,
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"octave-cli", "--eval", `disp(1); x = "a b"`, "train.m"}}},
		{"double quotes and escapes", "name: a\ncommand: sh -c \"echo \\\"hi there\\\"\" x\\ y",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"sh", "-c", `echo "hi there"`, "x y"}}},
		{"timeout seconds", "name: a\ncommand: [x]\ntimeout: 90",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Timeout: durationpb.New(90 * time.Second)}},
		{"timeout fractional seconds", "name: a\ncommand: [x]\ntimeout: 1.5",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Timeout: durationpb.New(1500 * time.Millisecond)}},
		{"timeout zero is none", "name: a\ncommand: [x]\ntimeout: 0s",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}}},
		{"memory plain", "name: a\ncommand: [x]\nresources: {memory: 1048576}",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Resources: &cloudmlv1.Resources{MemoryBytes: 1 << 20}}},
		{"memory suffixes", "name: a\ncommand: [x]\nresources: {memory: 2G}",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Resources: &cloudmlv1.Resources{MemoryBytes: 2e9}}},
		{"memory Gi fraction", "name: a\ncommand: [x]\nresources: {memory: 1.5Gi}",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Resources: &cloudmlv1.Resources{MemoryBytes: 3 << 29}}},
		{"goal default", "name: a\ncommand: [x]\nobjective: {metric: acc}",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Objective: &cloudmlv1.Objective{Metric: "acc"}}},
		{"nulls are unset", "name: a\ncommand: [x]\nimage:\nretries: ~\nsweep:",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}}},
		{"anchors", "name: a\ncommand: &c [x, y]\nsweep: {grid: {p: *c}}",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x", "y"}, Sweep: &cloudmlv1.Sweep{
				Grid: map[string]*cloudmlv1.ParamValues{"p": {Values: []string{"x", "y"}}}}}},
		{"file URL", "name: a\ncommand: [x]\ncode: file:///srv/code\noutput: file:///srv/out",
			&cloudmlv1.JobSpec{Name: "a", Command: []string{"x"}, Code: &cloudmlv1.Source{Url: "file:///srv/code"}, Output: "file:///srv/out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.yaml), "f.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "name: a\ncommand: [x]\n" // lines 1-2
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown field with suggestion", head + "image: x\nretries: 1\ncode: .\noutput: gs://b\nparalelism: 2\n",
			[]string{`cloudml.yaml:7: unknown field "paralelism" (did you mean "parallelism"?)`}},
		{"unknown field without suggestion", head + "colour: red\n",
			[]string{`cloudml.yaml:3: unknown field "colour"`}},
		{"unknown nested field", head + "sweep:\n  grd: {lr: [1]}\n",
			[]string{`cloudml.yaml:4: unknown field "grd" in sweep (did you mean "grid"?)`}},
		{"unknown range field", head + "sweep:\n  random:\n    count: 1\n    params:\n      lr: {min: 1, max: 2, lgo: true}\n",
			[]string{`cloudml.yaml:7: unknown field "lgo" in sweep.random.params.lr (did you mean "log"?)`}},
		{"wrong type integer", head + "image: x\nretries: 1\ncode: .\noutput: gs://b\nparallelism: 2\nretries: three\n",
			[]string{`cloudml.yaml:8: duplicate field "retries" (first at line 4)`}},
		{"retries not a number", head + "\n\n\n\n\n\nretries: three\n",
			[]string{`cloudml.yaml:9: field "retries": want an integer, got "three"`}},
		{"quoted number is a string", head + "parallelism: \"4\"\n",
			[]string{`cloudml.yaml:3: field "parallelism": want an integer, got "4"`}},
		{"integer out of range", head + "retries: 9999999999\n",
			[]string{`cloudml.yaml:3: field "retries": 9999999999 is out of range`}},
		{"name not a string", "command: [x]\nname: {a: b}\n",
			[]string{`cloudml.yaml:2: field "name": want a string, got a mapping`}},
		{"command wrong type", "name: a\ncommand: {a: b}\n",
			[]string{`cloudml.yaml:2: field "command": want a list of strings or a command line, got a mapping`}},
		{"command item wrong type", "name: a\ncommand:\n  - x\n  - [y]\n",
			[]string{`cloudml.yaml:4: field "command": want a list of strings, got a list`}},
		{"command unterminated quote", "name: a\ncommand: echo 'hi\n",
			[]string{`cloudml.yaml:2: field "command": unterminated ' quote`}},
		{"bad timeout", head + "timeout: soon\n",
			[]string{`cloudml.yaml:3: field "timeout": want a duration like "10m" or a number of seconds, got "soon"`}},
		{"bad memory", head + "resources:\n  memory: 12 parsecs\n",
			[]string{`cloudml.yaml:4: field "resources.memory": want bytes`}},
		{"bad goal", head + "objective:\n  metric: m\n  goal: best\n",
			[]string{`cloudml.yaml:5: field "objective.goal": want minimize or maximize, got "best"`}},
		{"bad bool", head + "sweep: {random: {count: 1, params: {lr: {min: 1, max: 2, log: maybe}}}}\n",
			[]string{`cloudml.yaml:3: field "sweep.random.params.lr.log": want true or false, got "maybe"`}},
		{"grid not a list", head + "sweep:\n  grid:\n    lr: 0.1\n",
			[]string{`cloudml.yaml:5: field "sweep.grid.lr": want a list of values, got "0.1"`}},
		{"grid nested list", head + "sweep:\n  grid:\n    lr: [[1]]\n",
			[]string{`cloudml.yaml:5: field "sweep.grid.lr": want a list of values, got a list`}},
		{"range missing max", head + "sweep:\n  random:\n    count: 2\n    params:\n      lr: {min: 1}\n",
			[]string{`cloudml.yaml:7: field "sweep.random.params.lr": min and max are required`}},
		{"env wrong type", head + "env:\n  A: [1]\n",
			[]string{`cloudml.yaml:4: field "env.A": want a string, got a list`}},
		{"duplicate nested key", head + "env:\n  A: 1\n  A: 2\n",
			[]string{`cloudml.yaml:5: duplicate field "env.A" (first at line 4)`}},
		{"bad yaml with line", head + "sweep: [1, 2\n",
			[]string{`cloudml.yaml:3: bad YAML: did not find expected ',' or ']'`}},
		{"bad yaml without yaml's line", head + "image: a: b\n",
			[]string{`cloudml.yaml:3: bad YAML: mapping values are not allowed in this context`}},
		{"tab indentation", head + "env:\n\tA: 1\n",
			[]string{`cloudml.yaml:4: bad YAML`}},
		{"empty document", "", []string{`cloudml.yaml:1: empty document`}},
		{"comments only", "# nothing\n\n", []string{`cloudml.yaml:1: empty document`}},
		{"not a mapping", "- a\n- b\n", []string{`cloudml.yaml:1: want a mapping of fields at the top level, got a list`}},
		{"several problems", "name: a\ncommand: [x]\nretries: x\nparallelism: y\n",
			[]string{`cloudml.yaml:3: field "retries"`, `cloudml.yaml:4: field "parallelism"`}},

		// Validation errors found after decoding carry their line too.
		{"missing name", "command: [x]\nretries: 1\n", []string{`cloudml.yaml:1: name: required`}},
		{"bad name", "\nname: no_underscores\ncommand: [x]\n", []string{`cloudml.yaml:2: name: "no_underscores" must be`}},
		{"name too long", "name: " + strings.Repeat("a", 41) + "\ncommand: [x]\n", []string{`cloudml.yaml:1: name:`}},
		{"missing command", "name: a\n", []string{`cloudml.yaml:1: command: required`}},
		{"empty command", "name: a\ncommand: \"  \"\n", []string{`cloudml.yaml:2: command: required`}},
		{"empty grid list", head + "sweep:\n  grid:\n    lambda: [1]\n    lr: []\n",
			[]string{`cloudml.yaml:6: sweep.grid.lr: empty list gives zero tasks`}},
		{"bad param name", head + "sweep:\n  grid:\n    1lr: [1]\n", []string{`cloudml.yaml:5: sweep.grid.1lr: parameter name "1lr"`}},
		{"param in grid and random", head + "sweep:\n  grid:\n    lr: [1]\n  random:\n    count: 1\n    params:\n      lr: {min: 1, max: 2}\n",
			[]string{`cloudml.yaml:9: sweep.random.params.lr: "lr" is also in sweep.grid`}},
		{"params with one env name", head + "sweep:\n  grid:\n    lr: [1]\n    LR: [2]\n",
			[]string{`cloudml.yaml:5: sweep.grid.lr: parameters "LR" and "lr" would both be CLOUDML_PARAM_LR`}},
		{"random count zero", head + "sweep:\n  random:\n    params: {lr: {min: 1, max: 2}}\n",
			[]string{`cloudml.yaml:4: sweep.random.count: must be >= 1, got 0`}},
		{"random min not below max", head + "sweep:\n  random:\n    count: 1\n    params:\n      lr: {min: 2, max: 1}\n",
			[]string{`cloudml.yaml:7: sweep.random.params.lr: min (2) must be less than max (1)`}},
		{"log needs positive min", head + "sweep:\n  random:\n    count: 1\n    params:\n      lr: {min: 0, max: 1, log: true}\n",
			[]string{`cloudml.yaml:7: sweep.random.params.lr: log needs min > 0`}},
		{"too many tasks", head + "sweep:\n  grid:\n    a: [1,2,3,4,5,6,7,8,9,10]\n    b: [1,2,3,4,5,6,7,8,9,10]\n  random:\n    count: 1001\n",
			[]string{`cloudml.yaml:3: sweep: 100100 tasks, more than the limit of 100000`}},
		{"negative retries", head + "retries: -1\n", []string{`cloudml.yaml:3: retries: must be >= 0, got -1`}},
		{"negative parallelism", head + "parallelism: -2\n", []string{`cloudml.yaml:3: parallelism: must be >= 0, got -2`}},
		{"negative timeout", head + "timeout: -5m\n", []string{`cloudml.yaml:3: timeout: must be >= 0`}},
		{"bad code scheme", head + "code: s3://bucket/code\n", []string{`cloudml.yaml:3: code: "s3://bucket/code": only gs:// and file://`}},
		{"bad data scheme", head + "data:\n  train: http://x/y\n", []string{`cloudml.yaml:4: data.train: "http://x/y"`}},
		{"bad data name", head + "data:\n  ..: gs://b/x\n", []string{`cloudml.yaml:4: data...: data name`}},
		{"gs without bucket", head + "output: gs:///x\n", []string{`cloudml.yaml:3: output: "gs:///x" has no bucket name`}},
		{"relative file URL", head + "output: file://out\n", []string{`cloudml.yaml:3: output: "file://out": want file:///absolute/path`}},
		{"objective without metric", head + "objective: {goal: maximize}\n", []string{`cloudml.yaml:3: objective.metric: required`}},
		{"bad env name", head + "env:\n  A: 1\n  B-C: 2\n", []string{`cloudml.yaml:5: env.B-C: not a valid environment variable name`}},
		{"reserved env name", head + "env:\n  CLOUDML_TASK_INDEX: 2\n", []string{`cloudml.yaml:4: env.CLOUDML_TASK_INDEX: names starting with CLOUDML_ are reserved`}},
		{"negative cpus", head + "resources: {cpus: -1}\n", []string{`cloudml.yaml:3: resources.cpus: must be a number >= 0`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse([]byte(tc.yaml), "cloudml.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %v", spec)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.File != "cloudml.yaml" || fe.Line == 0 {
				t.Errorf("error %#v lacks a file and line", fe)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		"":                       nil,
		"  a   b\tc ":            {"a", "b", "c"},
		`a "b c" 'd e'`:          {"a", "b c", "d e"},
		`a""b ''`:                {"ab", ""},
		`x='1 2' "it's"`:         {"x=1 2", "it's"},
		`'no \escape' \"q\" a\b`: {`no \escape`, `"q"`, "ab"},
	} {
		got, err := splitCommand(in)
		if err != nil {
			t.Errorf("splitCommand(%q): %v", in, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("splitCommand(%q) (-want +got):\n%s", in, diff)
		}
	}
	for _, in := range []string{`a "b`, `'c`, `d\`} {
		if _, err := splitCommand(in); err == nil {
			t.Errorf("splitCommand(%q) succeeded", in)
		}
	}
}

func TestParamEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"lr":         "CLOUDML_PARAM_LR",
		"Lambda_2":   "CLOUDML_PARAM_LAMBDA_2",
		"drop-out.p": "CLOUDML_PARAM_DROP_OUT_P",
		"ü":          "CLOUDML_PARAM__",
	} {
		if got := ParamEnvName(in); got != want {
			t.Errorf("ParamEnvName(%q) = %q, want %q", in, got, want)
		}
	}
}
