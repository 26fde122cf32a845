// Package mutate runs mutation testing (go-gremlins/gremlins, pinned in
// tools/go.mod) on the packages that hold CloudML's guarantees and judges
// the result: per package, mutants killed, survived, timed out and not
// covered, and whether at least Goal of the covered ones were killed.
//
// A surviving mutant is a change to the code that no test notices. Each
// one is either killed by a new test or named in equivalent.txt with the
// reason it cannot be told apart from the original (for example `<` and
// `<=` on a bound where equality is impossible). Survivors named there are
// counted apart and do not lower the figure; any other survivor is printed
// with its source line so the next test is easy to write.
//
// It is for developers (`make mutate`, `make mutate-quick`), not part of
// `make test`: a full run takes tens of minutes on two cores.
package mutate

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Goal is the share of covered mutants each package must kill.
const Goal = 0.85

// Target is one package and, when its guarantees sit in a few files of a
// larger package, those files.
type Target struct {
	Dir   string   // package directory, relative to the module root
	Files []string // files to mutate; empty means every non-test file
	Why   string   // what the package guarantees, for the table
}

// Targets are the packages whose guarantees mutation testing checks.
var Targets = []Target{
	{Dir: "coordinator", Files: []string{"scheduler.go", "report.go", "jobs.go", "state.go", "swarm_jobs.go", "session.go"}, Why: "scheduling, reports, retries, cancel"},
	{Dir: "coordinator/store", Why: "durable state"},
	{Dir: "coordinator/logbroker", Why: "logs acknowledged only when durable"},
	{Dir: "coordinator/placement", Why: "least loaded node that fits; why a task waits"},
	{Dir: "coordinator/dispatch", Why: "commands sent only once durable; one session per node"},
	{Dir: "coordinator/pulse", Why: "only node certificates heartbeat; each beat passed on"},
	{Dir: "agent/logship", Why: "exactly-once logs"},
	{Dir: "agent/attempt", Why: "results upload"},
	{Dir: "agent/reportbatch", Why: "each batched report its own outcome"},
	{Dir: "internal/archive", Why: "hostile archive paths"},
	{Dir: "internal/jobspec", Why: "job spec validation"},
}

// Mutant is one mutation gremlins tried.
type Mutant struct {
	File   string // relative to the module root
	Line   int
	Column int
	Type   string // CONDITIONALS_BOUNDARY, ...
	Status string // KILLED, LIVED, TIMED OUT, NOT COVERED, NOT VIABLE, SKIPPED
}

// Result is one package's outcome.
type Result struct {
	Target     Target
	Killed     int
	Lived      int // survivors not named in equivalent.txt
	Equivalent int // survivors named there
	TimedOut   int // counted as killed: the tests noticed (they hung)
	NotCovered int
	NotViable  int
	Survivors  []Mutant // the Lived ones, for the report
}

// Covered is the number of mutants some test ran.
func (r Result) Covered() int { return r.Killed + r.TimedOut + r.Lived }

// Rate is the share of covered, non-equivalent mutants the tests killed; 1
// when nothing was covered.
func (r Result) Rate() float64 {
	if r.Covered() == 0 {
		return 1
	}
	return float64(r.Killed+r.TimedOut) / float64(r.Covered())
}

// Met says whether the package reached Goal.
func (r Result) Met() bool { return r.Rate() >= Goal }

// ParseReport reads gremlins' JSON output (-o file). dir is the package
// directory the run was started on; file names in the report are relative
// to it.
func ParseReport(rd io.Reader, dir string) ([]Mutant, error) {
	var rep struct {
		Files []struct {
			Name      string `json:"file_name"`
			Mutations []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
				Line   int    `json:"line"`
				Column int    `json:"column"`
			} `json:"mutations"`
		} `json:"files"`
	}
	if err := json.NewDecoder(rd).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read gremlins report: %w", err)
	}
	var out []Mutant
	for _, f := range rep.Files {
		for _, m := range f.Mutations {
			out = append(out, Mutant{File: filepath.ToSlash(filepath.Join(dir, f.Name)), Line: m.Line, Column: m.Column, Type: m.Type, Status: m.Status})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		if out[i].Column != out[j].Column {
			return out[i].Column < out[j].Column
		}
		return out[i].Type < out[j].Type
	})
	return out, nil
}

// Tally counts one package's mutants; a survivor is equivalent when eq
// names it.
func Tally(t Target, ms []Mutant, eq Equivalents, src SourceLine) Result {
	r := Result{Target: t}
	for _, m := range ms {
		switch m.Status {
		case "KILLED":
			r.Killed++
		case "TIMED OUT":
			r.TimedOut++
		case "NOT COVERED":
			r.NotCovered++
		case "NOT VIABLE":
			r.NotViable++
		case "LIVED":
			if eq.Match(m, src(m.File, m.Line)) != "" {
				r.Equivalent++
				continue
			}
			r.Lived++
			r.Survivors = append(r.Survivors, m)
		}
	}
	return r
}

// SourceLine returns the trimmed text of a line of a file, prefixed with
// the name of the function that holds it and a colon ("Save: if err != nil {").
type SourceLine func(file string, line int) string

// FileLines reads lines from files under root, caching each file.
func FileLines(root string) SourceLine {
	type parsed struct {
		lines []string
		funcs []*ast.FuncDecl
		fset  *token.FileSet
	}
	cache := map[string]*parsed{}
	return func(file string, line int) string {
		p, ok := cache[file]
		if !ok {
			p = &parsed{fset: token.NewFileSet()}
			if b, err := os.ReadFile(filepath.Join(root, file)); err == nil {
				p.lines = strings.Split(string(b), "\n")
				if f, err := parser.ParseFile(p.fset, file, b, 0); err == nil {
					for _, d := range f.Decls {
						if fd, ok := d.(*ast.FuncDecl); ok {
							p.funcs = append(p.funcs, fd)
						}
					}
				}
			}
			cache[file] = p
		}
		if line < 1 || line > len(p.lines) {
			return ""
		}
		fn := ""
		for _, fd := range p.funcs {
			if p.fset.Position(fd.Pos()).Line <= line && line <= p.fset.Position(fd.End()).Line {
				fn = fd.Name.Name
			}
		}
		return fn + ": " + strings.TrimSpace(p.lines[line-1])
	}
}

// Equivalent names one survivor that no test can kill: a file, a mutator
// and a piece of the source line with the name of its function ("Save: if
// err != nil"; so the entry survives edits elsewhere in the file), with
// the reason.
type Equivalent struct {
	File, Type, Code, Reason string
}

// Equivalents is the list kept in equivalent.txt.
type Equivalents []Equivalent

//go:embed equivalent.txt
var equivalentTxt string

// Listed returns the equivalents kept in this package's equivalent.txt.
func Listed() (Equivalents, error) { return ParseEquivalents(strings.NewReader(equivalentTxt)) }

// ParseEquivalents reads lines of the form
//
//	file | MUTATOR | func: code on the line | why no test can tell
//
// MUTATOR@COLUMN names one of several mutants of its kind on the line.
//
// Blank lines and lines starting with # are ignored.
func ParseEquivalents(rd io.Reader) (Equivalents, error) {
	var eq Equivalents
	sc := bufio.NewScanner(rd)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, " | ", 4)
		if len(f) != 4 || f[0] == "" || f[1] == "" || !strings.Contains(f[2], ": ") || strings.TrimSpace(f[3]) == "" {
			return nil, fmt.Errorf("equivalent.txt line %d: want `file | MUTATOR | func: code | reason`, got %q", n, line)
		}
		eq = append(eq, Equivalent{File: strings.TrimSpace(f[0]), Type: strings.TrimSpace(f[1]), Code: strings.TrimSpace(f[2]), Reason: strings.TrimSpace(f[3])})
	}
	return eq, sc.Err()
}

// Match returns the reason m is equivalent, or "" when no entry names it.
func (eq Equivalents) Match(m Mutant, code string) string {
	fn, text, _ := strings.Cut(code, ": ")
	for _, e := range eq {
		efn, etext, _ := strings.Cut(e.Code, ": ")
		typ, col, hasCol := strings.Cut(e.Type, "@")
		if hasCol && col != strconv.Itoa(m.Column) {
			continue
		}
		if e.File == m.File && typ == m.Type && efn == fn && text != "" && strings.Contains(text, etext) {
			return e.Reason
		}
	}
	return ""
}

// WriteTable prints the per-package table and, below it, every survivor
// with its source line.
func WriteTable(w io.Writer, rs []Result, src SourceLine) {
	fmt.Fprintf(w, "%-20s %7s %7s %6s %6s %8s %7s %5s  %s\n", "package", "killed", "timeout", "lived", "equiv", "uncover", "killed%", "goal", "guarantees")
	for _, r := range rs {
		goal := "ok"
		if !r.Met() {
			goal = "MISS"
		}
		fmt.Fprintf(w, "%-20s %7d %7d %6d %6d %8d %6.1f%% %5s  %s\n", r.Target.Dir, r.Killed, r.TimedOut, r.Lived, r.Equivalent, r.NotCovered, 100*r.Rate(), goal, r.Target.Why)
	}
	for _, r := range rs {
		for _, m := range r.Survivors {
			fmt.Fprintf(w, "survived: %s:%d:%d %s    %s\n", m.File, m.Line, m.Column, m.Type, src(m.File, m.Line))
		}
	}
}
