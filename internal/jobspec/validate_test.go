package jobspec

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestValidateFlagsSpec(t *testing.T) {
	ok := func() *cloudmlv1.JobSpec {
		return &cloudmlv1.JobSpec{Name: "linreg", Command: []string{"octave-cli", "train.m"}, Code: &cloudmlv1.Source{Url: "./code"}}
	}
	if err := Validate(ok()); err != nil {
		t.Fatalf("Validate(valid spec) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		modify func(*cloudmlv1.JobSpec)
		want   string // the whole message: no file, no line
	}{
		{"missing name", func(s *cloudmlv1.JobSpec) { s.Name = "" }, "name: required"},
		{"upper-case name", func(s *cloudmlv1.JobSpec) { s.Name = "LinReg" }, `name: "LinReg" must be 1 to 40 lowercase letters, digits and dashes, starting with a letter or digit`},
		{"leading dash", func(s *cloudmlv1.JobSpec) { s.Name = "-x" }, `name: "-x" must be 1 to 40 lowercase letters, digits and dashes, starting with a letter or digit`},
		{"no command", func(s *cloudmlv1.JobSpec) { s.Command = nil }, "command: required"},
		{"empty program", func(s *cloudmlv1.JobSpec) { s.Command = []string{""} }, "command: the program name is empty"},
		{"bad scheme", func(s *cloudmlv1.JobSpec) { s.Output = "s3://b/x" }, `output: "s3://b/x": only gs:// and file:// URLs (or local paths) are supported`},
		{"empty data", func(s *cloudmlv1.JobSpec) { s.Data = map[string]*cloudmlv1.Source{"train": {}} }, "data.train: required: a local path or a bucket URL"},
		{"data name with slash", func(s *cloudmlv1.JobSpec) { s.Data = map[string]*cloudmlv1.Source{"a/b": {Url: "x"}} }, "data.a/b: data name must be letters, digits, '_', '.' and '-'"},
		{"reserved env", func(s *cloudmlv1.JobSpec) { s.Env = map[string]string{"CLOUDML_PARAM_LR": "1"} }, "env.CLOUDML_PARAM_LR: names starting with CLOUDML_ are reserved"},
		{"bad env", func(s *cloudmlv1.JobSpec) { s.Env = map[string]string{"1X": "1"} }, "env.1X: not a valid environment variable name"},
		{"negative retries", func(s *cloudmlv1.JobSpec) { s.Retries = -1 }, "retries: must be >= 0, got -1"},
		{"negative parallelism", func(s *cloudmlv1.JobSpec) { s.Parallelism = -1 }, "parallelism: must be >= 0, got -1"},
		{"negative timeout", func(s *cloudmlv1.JobSpec) { s.Timeout = durationpb.New(-1e9) }, "timeout: must be >= 0, got -1s"},
		{"objective without metric", func(s *cloudmlv1.JobSpec) { s.Objective = &cloudmlv1.Objective{Maximize: true} }, "objective.metric: required when objective is given"},
		{"NaN cpus", func(s *cloudmlv1.JobSpec) { s.Resources = &cloudmlv1.Resources{Cpus: math.NaN()} }, "resources.cpus: must be a number >= 0, got NaN"},
		{"negative memory", func(s *cloudmlv1.JobSpec) { s.Resources = &cloudmlv1.Resources{MemoryBytes: -1} }, "resources.memory: must be >= 0, got -1"},
		{"infinite range", func(s *cloudmlv1.JobSpec) {
			s.Sweep = &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{Count: 1, Params: map[string]*cloudmlv1.Range{"x": {Min: 0, Max: math.Inf(1)}}}}
		}, "sweep.random.params.x: min and max must be finite"},
		{"bad random param name", func(s *cloudmlv1.JobSpec) {
			s.Sweep = &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{Count: 1, Params: map[string]*cloudmlv1.Range{"a-b": {Min: 0, Max: 1}}}}
		}, `sweep.random.params.a-b: parameter name "a-b" must match [A-Za-z_][A-Za-z0-9_]*`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.modify(s)
			err := Validate(s)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if err.Error() != tc.want {
				t.Errorf("Validate = %q\nwant        %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Validate(&cloudmlv1.JobSpec{Retries: -1})
	want := "name: required\ncommand: required\nretries: must be >= 0, got -1"
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %q, want %q", err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("joined error does not wrap ErrInvalid")
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec") {
		t.Errorf("Validate(nil) = %v", err)
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"paralelism": "parallelism",
		"comand":     "command",
		"Name":       "name",
		"timout":     "timeout",
		"xyzzy":      "",
		"ouptut":     "output",
	} {
		if got := suggest(in, topFields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
