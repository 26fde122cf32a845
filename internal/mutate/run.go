package mutate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Config says what to mutate and how.
type Config struct {
	Root    string    // module root (holds tools/go.mod)
	Targets []Target  // packages to mutate; default Targets
	Only    []string  // if set, only the targets whose Dir is listed
	Diff    string    // quick mode: mutate only lines changed since this git ref, in targets with changed files
	Workers int       // parallel mutants; 0: gremlins' default (one per CPU)
	Log     io.Writer // progress; default os.Stderr
	// Reports, if set, is a directory that keeps gremlins' JSON report of
	// each target (<dir with _ for />.json); with Tally, the reports found
	// there are judged again (after equivalent.txt changed) and nothing runs.
	Reports string
	Tally   bool
}

// DefaultConfig mutates every target from the current directory.
func DefaultConfig() Config { return Config{Root: ".", Targets: Targets, Log: os.Stderr} }

// Validate checks the configuration.
func (c Config) Validate() error {
	if _, err := os.Stat(filepath.Join(c.Root, "tools", "go.mod")); err != nil {
		return fmt.Errorf("run from the module root (tools/go.mod pins gremlins): %w", err)
	}
	known := map[string]bool{}
	for _, t := range c.Targets {
		known[t.Dir] = true
	}
	for _, d := range c.Only {
		if !known[d] {
			return fmt.Errorf("%q is not a mutation target; targets: %s", d, strings.Join(dirs(c.Targets), ", "))
		}
	}
	return nil
}

func dirs(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Dir)
	}
	return out
}

// timeoutCoefficient multiplies the package's own test time (measured by
// gremlins with -count=1) into the deadline of one mutant's test run; a
// mutant that passes it counts as killed (its tests hung). Generous, so a
// loaded machine does not turn survivors into timeouts.
const timeoutCoefficient = 10

// Run mutates each target in turn and returns the results.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	eq, err := Listed()
	if err != nil {
		return nil, err
	}
	src := FileLines(cfg.Root)
	var changed map[string]bool
	if cfg.Diff != "" {
		if changed, err = changedFiles(ctx, cfg.Root, cfg.Diff); err != nil {
			return nil, err
		}
	}
	if cfg.Tally && cfg.Reports == "" {
		return nil, fmt.Errorf("tally needs the directory of saved reports")
	}
	dir := cfg.Reports
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cloudml-mutate-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []Result
	for _, t := range cfg.Targets {
		if len(cfg.Only) > 0 && !contains(cfg.Only, t.Dir) {
			continue
		}
		if changed != nil && !t.touched(changed) {
			fmt.Fprintf(cfg.Log, "mutate: %s: no source changed since %s, skipped\n", t.Dir, cfg.Diff)
			continue
		}
		fmt.Fprintf(cfg.Log, "mutate: %s (%s)...\n", t.Dir, t.Why)
		report := filepath.Join(dir, strings.ReplaceAll(t.Dir, "/", "_")+".json")
		var ms []Mutant
		if cfg.Tally {
			if ms, err = readReport(report, t.Dir); errors.Is(err, os.ErrNotExist) {
				continue // not run
			}
		} else {
			ms, err = unleash(ctx, cfg, t, report)
		}
		if err != nil {
			return out, err
		}
		r := Tally(t, ms, eq, src)
		fmt.Fprintf(cfg.Log, "mutate: %s: %d killed, %d timed out, %d survived, %d not covered\n", t.Dir, r.Killed, r.TimedOut, r.Lived+r.Equivalent, r.NotCovered)
		out = append(out, r)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// files lists the target's non-test Go files.
func (t Target) files(root string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(root, t.Dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			out = append(out, n)
		}
	}
	return out, nil
}

func (t Target) mutates(name string) bool { return len(t.Files) == 0 || contains(t.Files, name) }

func (t Target) touched(changed map[string]bool) bool {
	for f := range changed {
		if filepath.Dir(f) == t.Dir && !strings.HasSuffix(f, "_test.go") && t.mutates(filepath.Base(f)) {
			return true
		}
	}
	return false
}

// excludes returns gremlins -E patterns (matched against paths relative to
// the package directory) that leave only the target's own files: no
// sub-packages, and no files outside Files.
func (t Target) excludes(root string) ([]string, error) {
	out := []string{"/"}
	all, err := t.files(root)
	if err != nil {
		return nil, err
	}
	var skip []string
	for _, f := range all {
		if !t.mutates(f) {
			skip = append(skip, regexp.QuoteMeta(f))
		}
	}
	for _, f := range t.Files {
		if !contains(all, f) {
			return nil, fmt.Errorf("mutation target %s names %s, which is not in the package: update internal/mutate.Targets", t.Dir, f)
		}
	}
	if len(skip) > 0 {
		out = append(out, "^("+strings.Join(skip, "|")+")$")
	}
	return out, nil
}

func unleash(ctx context.Context, cfg Config, t Target, report string) ([]Mutant, error) {
	ex, err := t.excludes(cfg.Root)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, t.Dir)
	args := []string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "gremlins", "unleash",
		"--timeout-coefficient", fmt.Sprint(timeoutCoefficient), "-o", report}
	if cfg.Workers > 0 {
		args = append(args, "--workers", fmt.Sprint(cfg.Workers))
	}
	if cfg.Diff != "" {
		args = append(args, "--diff", cfg.Diff)
	}
	for _, e := range ex {
		args = append(args, "-E", e)
	}
	args = append(args, dir)
	cmd := exec.CommandContext(ctx, "go", args...)
	// gremlins names files relative to the package directory but reads
	// `git diff` in its working directory: run it there, with git told to
	// print paths relative to it, so quick mode's changed lines match.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=diff.relative", "GIT_CONFIG_VALUE_0=true",
		// gremlins times the package's tests once to set each mutant's
		// deadline; a cached result would make that deadline tiny.
		"GOFLAGS=-count=1")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = cfg.Log, io.MultiWriter(cfg.Log, &stderr)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gremlins on %s: %w", t.Dir, err)
	}
	ms, err := readReport(report, t.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("gremlins on %s wrote no report: %s", t.Dir, stderr.String())
	}
	return ms, err
}

func readReport(path, dir string) ([]Mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseReport(f, dir)
}

// changedFiles lists the files (relative to the module root) that differ
// between the merge base of ref and the working tree.
func changedFiles(ctx context.Context, root, ref string) (map[string]bool, error) {
	cmd := exec.CommandContext(ctx, "git", "diff", "--merge-base", "--name-only", ref)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git diff --merge-base %s: %w (is %q a branch or commit?)", ref, err, ref)
	}
	m := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			m[l] = true
		}
	}
	return m, nil
}
