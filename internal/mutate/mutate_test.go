package mutate

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const report = `{"go_module":"m","files":[
 {"file_name":"a.go","mutations":[
  {"type":"CONDITIONALS_BOUNDARY","status":"LIVED","line":3,"column":7},
  {"type":"CONDITIONALS_NEGATION","status":"KILLED","line":3,"column":7},
  {"type":"ARITHMETIC_BASE","status":"TIMED OUT","line":4,"column":2},
  {"type":"ARITHMETIC_BASE","status":"NOT COVERED","line":9,"column":2}]},
 {"file_name":"b.go","mutations":[
  {"type":"INCREMENT_DECREMENT","status":"LIVED","line":1,"column":1},
  {"type":"CONDITIONALS_NEGATION","status":"KILLED","line":2,"column":5}]}]}`

func lines(m map[string][]string) SourceLine {
	return func(file string, line int) string {
		l := m[file]
		if line < 1 || line > len(l) {
			return ""
		}
		return l[line-1]
	}
}

func TestTallyCountsEquivalentsApart(t *testing.T) {
	ms, err := ParseReport(strings.NewReader(report), "pkg/x")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 || ms[0].File != "pkg/x/a.go" || ms[len(ms)-1].File != "pkg/x/b.go" {
		t.Fatalf("parsed %+v", ms)
	}
	src := lines(map[string][]string{
		"pkg/x/a.go": {"", "", "f: if n < max {", "f: n++"},
		"pkg/x/b.go": {"g: i++", "g: if ok {"},
	})
	eq, err := ParseEquivalents(strings.NewReader("# comment\n\npkg/x/a.go | CONDITIONALS_BOUNDARY | f: n < max | n never equals max\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := Tally(Target{Dir: "pkg/x"}, ms, eq, src)
	if r.Killed != 2 || r.TimedOut != 1 || r.Lived != 1 || r.Equivalent != 1 || r.NotCovered != 1 {
		t.Fatalf("tally %+v", r)
	}
	if len(r.Survivors) != 1 || r.Survivors[0].File != "pkg/x/b.go" {
		t.Fatalf("survivors %+v, want only b.go's", r.Survivors)
	}
	if got := r.Rate(); got != 0.75 || r.Met() {
		t.Fatalf("rate %v met %v; want 0.75 (3 of 4 covered non-equivalent), below the goal", got, r.Met())
	}
	// The same entry must not excuse another mutator or another line.
	if eq.Match(Mutant{File: "pkg/x/a.go", Type: "CONDITIONALS_NEGATION"}, "f: if n < max {") != "" ||
		eq.Match(Mutant{File: "pkg/x/a.go", Type: "CONDITIONALS_BOUNDARY"}, "f: if m < max {") != "" ||
		eq.Match(Mutant{File: "pkg/x/a.go", Type: "CONDITIONALS_BOUNDARY"}, "ff: if n < max {") != "" {
		t.Fatal("an equivalent entry matched a mutant it does not name")
	}
	col := Equivalents{{File: "a.go", Type: "ARITHMETIC_BASE@9", Code: "f: a+b", Reason: "r"}}
	if col.Match(Mutant{File: "a.go", Type: "ARITHMETIC_BASE", Column: 9}, "f: x := a+b+c") == "" ||
		col.Match(Mutant{File: "a.go", Type: "ARITHMETIC_BASE", Column: 11}, "f: x := a+b+c") != "" {
		t.Fatal("an equivalent entry matched a mutant it does not name")
	}
	var b strings.Builder
	WriteTable(&b, []Result{r}, src)
	if !strings.Contains(b.String(), "75.0%") || !strings.Contains(b.String(), "MISS") || !strings.Contains(b.String(), "survived: pkg/x/b.go:1:1 INCREMENT_DECREMENT    g: i++") {
		t.Fatalf("table:\n%s", b.String())
	}
}

func TestParseEquivalentsRefusesEntriesWithoutReason(t *testing.T) {
	for _, in := range []string{"a.go | X | f: code", "a.go | X | f: code |  ", " | X | f: c | r", "a.go | X | code | r"} {
		if _, err := ParseEquivalents(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if _, err := Listed(); err != nil {
		t.Fatalf("equivalent.txt: %v", err)
	}
}

func TestExcludesLeaveOnlyTheNamedFiles(t *testing.T) {
	tg := Target{Dir: "coordinator", Files: []string{"report.go", "jobs.go"}}
	ex, err := tg.excludes("../..")
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(p string) bool {
		for _, e := range ex {
			if regexp.MustCompile(e).MatchString(p) {
				return true
			}
		}
		return false
	}
	for p, want := range map[string]bool{"report.go": false, "jobs.go": false, "scheduler.go": true, "store/store.go": true, "myjobs.go": false} {
		if excluded(p) != want {
			t.Errorf("%s excluded %v, want %v (patterns %q)", p, !want, want, ex)
		}
	}
	if _, err := (Target{Dir: "coordinator", Files: []string{"gone.go"}}).excludes("../.."); err == nil {
		t.Error("a target naming a missing file was accepted")
	}
}

func TestEveryTargetExists(t *testing.T) {
	for _, tg := range Targets {
		if _, err := tg.excludes("../.."); err != nil {
			t.Error(err)
		}
	}
}

// TestEquivalentsNameExistingCode fails when code named in equivalent.txt
// is gone or moved to another function: the entry must go or be updated.
func TestEquivalentsNameExistingCode(t *testing.T) {
	eq, err := Listed()
	if err != nil {
		t.Fatal(err)
	}
	src := FileLines("../..")
	for _, e := range eq {
		found := false
		typ, col, _ := strings.Cut(e.Type, "@")
		c, _ := strconv.Atoi(col)
		for n := 1; src(e.File, n) != ""; n++ {
			if (Equivalents{e}).Match(Mutant{File: e.File, Type: typ, Column: c}, src(e.File, n)) != "" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("equivalent.txt names %s %q, which is not in the file any more", e.File, e.Code)
		}
	}
}

// TestTallyJudgesSavedReports: -tally reads the reports kept in -reports
// and runs nothing; a target without a report is left out.
func TestTallyJudgesSavedReports(t *testing.T) {
	dir := t.TempDir()
	rep := `{"files":[{"file_name":"extract.go","mutations":[{"type":"ARITHMETIC_BASE","status":"KILLED","line":1,"column":1}]}]}`
	if err := os.WriteFile(filepath.Join(dir, "internal_archive.json"), []byte(rep), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Root, cfg.Reports, cfg.Tally, cfg.Log = "../..", dir, true, io.Discard
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Target.Dir != "internal/archive" || rs[0].Killed != 1 {
		t.Fatalf("tally = %+v, want internal/archive with 1 killed", rs)
	}
}
