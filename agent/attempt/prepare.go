package attempt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cloudml/cloudml/agent/runtime"
	"github.com/cloudml/cloudml/internal/jobspec"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// layout is an attempt's directory on the node.
type layout struct {
	root    string // attempts/<job>/<task>/<attempt>
	run     string // the working directory
	output  string // CLOUDML_OUTPUT_DIR
	home    string // HOME, private to the task
	tmp     string // TMPDIR, private to the task
	data    string // CLOUDML_DATA_DIR, "" when there is no data
	logs    string // local copies of stdout and stderr
	stdout  string
	stderr  string
	warning string // a non-fatal layout problem
}

// prepare makes a fresh attempt directory: run/ links every top-level entry
// of the staged code (and data/ when there is data); output/, home/ and
// tmp/ are empty. The task writes only run/, output/, home/ and tmp/
// (writable); logs/ holds the agent's copies of its output.
func prepare(root, code string, data map[string]string) (*layout, error) {
	l := &layout{
		root: root, run: filepath.Join(root, "run"), output: filepath.Join(root, "output"),
		home: filepath.Join(root, "home"), tmp: filepath.Join(root, "tmp"), logs: filepath.Join(root, "logs"),
	}
	l.stdout, l.stderr = filepath.Join(l.logs, "stdout.log"), filepath.Join(l.logs, "stderr.log")
	// A directory left by a run before an agent crash is stale.
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("clear attempt dir: %w", err)
	}
	for _, d := range []string{l.run, l.output, l.logs, l.home, l.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create attempt dir: %w", err)
		}
	}
	for _, d := range []string{l.home, l.tmp} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("create attempt dir: %w", err)
		}
	}
	var entries []os.DirEntry
	if code != "" { // a job may come without code
		var err error
		if entries, err = os.ReadDir(code); err != nil {
			return nil, fmt.Errorf("read staged code: %w", err)
		}
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(code, e.Name()), filepath.Join(l.run, e.Name())); err != nil {
			return nil, fmt.Errorf("link code into the working dir: %w", err)
		}
	}
	if len(data) == 0 {
		return l, nil
	}
	l.data = filepath.Join(root, "data")
	if err := os.MkdirAll(l.data, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	for name, dir := range data {
		if err := os.Symlink(dir, filepath.Join(l.data, name)); err != nil {
			return nil, fmt.Errorf("link data %q: %w", name, err)
		}
	}
	if err := os.Symlink(l.data, filepath.Join(l.run, "data")); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("link data into the working dir: %w", err)
		}
		l.warning = "the code has its own data entry; the staged data is only at $CLOUDML_DATA_DIR"
	}
	return l, nil
}

// writable are the directories the task may write.
func (l *layout) writable() []string { return []string{l.run, l.output, l.home, l.tmp} }

// environ is the task's environment: the allow-listed part of the agent's
// own (runtime.HostEnv), the agent's BaseEnv, HOME and TMPDIR of the
// attempt, the assignment's env, then the CLOUDML_ variables.
func (a *Attempt) environ(l *layout) []string {
	base := append(runtime.HostEnv(a.cfg.HostEnv), a.cfg.BaseEnv...)
	base = append(base, "HOME="+l.home, "TMPDIR="+l.tmp)
	return Environ(base, a.asg, l.output, l.data)
}

// Environ is a task's environment, for a process or a container: base,
// the assignment's env, then CLOUDML_JOB_ID, _TASK_INDEX, _TASK_COUNT,
// _ATTEMPT, _OUTPUT_DIR, _DATA_DIR (when dataDir is set) and one
// CLOUDML_PARAM_<NAME> per parameter; later entries replace earlier ones.
func Environ(base []string, asg *cloudmlv1.Assignment, outputDir, dataDir string) []string {
	ref := asg.GetRef()
	vars := [][2]string{}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			vars = append(vars, [2]string{k, v})
		}
	}
	for _, k := range sortedKeys(asg.GetEnv()) {
		vars = append(vars, [2]string{k, asg.GetEnv()[k]})
	}
	vars = append(vars,
		[2]string{"CLOUDML_JOB_ID", ref.GetJobId()},
		[2]string{"CLOUDML_TASK_INDEX", strconv.Itoa(int(ref.GetTaskIndex()))},
		[2]string{"CLOUDML_TASK_COUNT", strconv.Itoa(int(asg.GetTaskCount()))},
		[2]string{"CLOUDML_ATTEMPT", strconv.Itoa(int(ref.GetAttempt()))},
		[2]string{"CLOUDML_OUTPUT_DIR", outputDir},
	)
	if dataDir != "" {
		vars = append(vars, [2]string{"CLOUDML_DATA_DIR", dataDir})
	}
	for _, k := range sortedKeys(asg.GetParams()) {
		vars = append(vars, [2]string{jobspec.ParamEnvName(k), asg.GetParams()[k]})
	}
	index := map[string]int{}
	var env []string
	for _, kv := range vars {
		s := kv[0] + "=" + kv[1]
		if i, ok := index[kv[0]]; ok {
			env[i] = s
			continue
		}
		index[kv[0]] = len(env)
		env = append(env, s)
	}
	return env
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
