package jobspec

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	paramRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	envRE      = paramRE
	dataNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	schemeRE   = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
)

// problems collects validation errors by field.
type problems []*Error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &Error{Field: field, Msg: field + ": " + fmt.Sprintf(format, args...)})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validate returns every problem of spec, in field order, then every limit
// it exceeds.
func validate(spec *cloudmlv1.JobSpec, l Limits) []*Error {
	var p problems
	if spec == nil {
		p.add("spec", "missing")
		return p
	}
	switch {
	case spec.Name == "":
		p.add("name", "required")
	case !nameRE.MatchString(spec.Name):
		p.add("name", "%q must be 1 to 40 lowercase letters, digits and dashes, starting with a letter or digit", spec.Name)
	}
	if spec.Code != nil {
		checkURL(&p, "code", spec.Code.Url)
	}
	for _, name := range sortedKeys(spec.Data) {
		field := "data." + name
		if !dataNameRE.MatchString(name) || name == "." || name == ".." {
			p.add(field, "data name must be letters, digits, '_', '.' and '-'")
		}
		if src := spec.Data[name]; src.GetUrl() == "" {
			p.add(field, "required: a local path or a bucket URL")
		} else {
			checkURL(&p, field, src.Url)
		}
	}
	switch {
	case len(spec.Command) == 0:
		p.add("command", "required")
	case spec.Command[0] == "":
		p.add("command", "the program name is empty")
	}
	for _, k := range sortedKeys(spec.Env) {
		switch {
		case !envRE.MatchString(k):
			p.add("env."+k, "not a valid environment variable name")
		case strings.HasPrefix(k, "CLOUDML_"):
			p.add("env."+k, "names starting with CLOUDML_ are reserved")
		}
	}
	p = append(p, validateSweep(spec.Sweep)...)
	if spec.Parallelism < 0 {
		p.add("parallelism", "must be >= 0, got %d", spec.Parallelism)
	}
	if spec.Retries < 0 {
		p.add("retries", "must be >= 0, got %d", spec.Retries)
	}
	if t := spec.Timeout; t != nil {
		if err := t.CheckValid(); err != nil {
			p.add("timeout", "%v", err)
		} else if t.AsDuration() < 0 {
			p.add("timeout", "must be >= 0, got %s", t.AsDuration())
		}
	}
	checkURL(&p, "output", spec.Output)
	if o := spec.Objective; o != nil && o.Metric == "" {
		p.add("objective.metric", "required when objective is given")
	}
	if r := spec.Resources; r != nil {
		if r.Cpus < 0 || math.IsNaN(r.Cpus) || math.IsInf(r.Cpus, 0) {
			p.add("resources.cpus", "must be a number >= 0, got %v", r.Cpus)
		}
		if r.MemoryBytes < 0 {
			p.add("resources.memory", "must be >= 0, got %d", r.MemoryBytes)
		}
	}
	checkLimits(&p, spec, l)
	return p
}

// checkURL accepts local paths, gs://bucket[/path] and file:///path.
func checkURL(p *problems, field, u string) {
	m := schemeRE.FindStringSubmatch(u)
	if m == nil {
		return
	}
	rest := u[len(m[0]):]
	switch strings.ToLower(m[1]) {
	case "gs":
		if bucket, _, _ := strings.Cut(rest, "/"); bucket == "" {
			p.add(field, "%q has no bucket name", u)
		}
	case "file":
		if !strings.HasPrefix(rest, "/") {
			p.add(field, "%q: want file:///absolute/path", u)
		}
	default:
		p.add(field, "%q: only gs:// and file:// URLs (or local paths) are supported", u)
	}
}

// validateSweep checks the sweep part of a spec; Expand relies on it.
func validateSweep(sw *cloudmlv1.Sweep) []*Error {
	var p problems
	if sw == nil {
		return nil
	}
	envOf := map[string]string{} // env name -> param that has it
	checkParam := func(field, name string) {
		if !paramRE.MatchString(name) {
			p.add(field, "parameter name %q must match [A-Za-z_][A-Za-z0-9_]*", name)
			return
		}
		env := ParamEnvName(name)
		if other, dup := envOf[env]; dup && other != name {
			p.add(field, "parameters %q and %q would both be %s", other, name, env)
		}
		envOf[env] = name
	}
	for _, name := range sortedKeys(sw.Grid) {
		field := "sweep.grid." + name
		checkParam(field, name)
		if len(sw.Grid[name].GetValues()) == 0 {
			p.add(field, "empty list gives zero tasks")
		}
	}
	if r := sw.Random; r != nil {
		if r.Count < 1 {
			p.add("sweep.random.count", "must be >= 1, got %d", r.Count)
		}
		for _, name := range sortedKeys(r.Params) {
			field := "sweep.random.params." + name
			if _, inGrid := sw.Grid[name]; inGrid {
				p.add(field, "%q is also in sweep.grid", name)
				continue
			}
			checkParam(field, name)
			checkRange(&p, field, r.Params[name])
		}
	}
	if n := TaskCount(sw); n > MaxTasks {
		p.add("sweep", "%d tasks, more than the limit of %d", n, MaxTasks)
	}
	return p
}

func checkRange(p *problems, field string, r *cloudmlv1.Range) {
	switch {
	case r == nil:
		p.add(field, "min and max are required")
	case math.IsNaN(r.Min) || math.IsNaN(r.Max) || math.IsInf(r.Min, 0) || math.IsInf(r.Max, 0):
		p.add(field, "min and max must be finite")
	case r.Min >= r.Max:
		p.add(field, "min (%v) must be less than max (%v)", r.Min, r.Max)
	case r.Log && r.Min <= 0:
		p.add(field, "log needs min > 0, got %v", r.Min)
	}
}

// TaskCount returns how many tasks sw expands to (1 for no sweep), or
// math.MaxInt64 if that does not fit.
func TaskCount(sw *cloudmlv1.Sweep) int64 {
	n := int64(1)
	mul := func(k int64) {
		if k > 0 && n > math.MaxInt64/k {
			n = math.MaxInt64
			return
		}
		n *= k
	}
	for _, pv := range sw.GetGrid() {
		mul(int64(len(pv.GetValues())))
	}
	if r := sw.GetRandom(); r != nil {
		mul(max(int64(r.Count), 0))
	}
	return n
}
