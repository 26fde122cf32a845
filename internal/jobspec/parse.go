package jobspec

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The keys each mapping of cloudml.yaml may have.
var (
	topFields = []string{
		"name", "image", "code", "data", "command", "env", "sweep", "parallelism",
		"retries", "timeout", "output", "objective", "resources",
	}
	sweepFields     = []string{"grid", "random"}
	randomFields    = []string{"seed", "count", "params"}
	rangeFields     = []string{"min", "max", "log", "integer"}
	objectiveFields = []string{"metric", "goal"}
	resourceFields  = []string{"cpus", "memory"}
)

// document decodes a whole cloudml.yaml.
func (d *decoder) document(data []byte) *cloudmlv1.JobSpec {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrorLine(data, err)
		d.errs = append(d.errs, &Error{File: d.file, Line: line, Msg: msg})
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		d.errs = append(d.errs, &Error{File: d.file, Line: 1, Msg: "empty document: want at least name and command"})
		return nil
	}
	root := resolve(doc.Content[0])
	d.root = root.Line
	if root.Kind != yaml.MappingNode {
		d.failf(root, "", "want a mapping of fields at the top level, got %s", describe(root))
		return nil
	}
	spec := &cloudmlv1.JobSpec{}
	d.fields(root, "", topFields, func(key string, v *yaml.Node) { d.top(spec, key, v) })
	return spec
}

func (d *decoder) top(spec *cloudmlv1.JobSpec, key string, v *yaml.Node) {
	switch key {
	case "name":
		if s, ok := d.str(v, key); ok {
			spec.Name = strings.ToLower(s)
		}
	case "image":
		spec.Image, _ = d.str(v, key)
	case "code":
		if s, ok := d.str(v, key); ok && s != "" {
			spec.Code = &cloudmlv1.Source{Url: s}
		}
	case "output":
		spec.Output, _ = d.str(v, key)
	case "data":
		spec.Data = map[string]*cloudmlv1.Source{}
		d.entries(v, key, func(name string, _, v *yaml.Node) {
			if s, ok := d.str(v, join2(key, name)); ok {
				spec.Data[name] = &cloudmlv1.Source{Url: s}
			}
		})
	case "command":
		spec.Command = d.command(v)
	case "env":
		spec.Env = map[string]string{}
		d.entries(v, key, func(name string, _, v *yaml.Node) {
			if s, ok := d.str(v, join2(key, name)); ok {
				spec.Env[name] = s
			}
		})
	case "sweep":
		spec.Sweep = d.sweep(v)
	case "parallelism":
		n, _ := d.integer(v, key, math.MinInt32, math.MaxInt32)
		spec.Parallelism = int32(n)
	case "retries":
		n, _ := d.integer(v, key, math.MinInt32, math.MaxInt32)
		spec.Retries = int32(n)
	case "timeout":
		if t, ok := d.duration(v, key); ok && t != 0 {
			spec.Timeout = durationpb.New(t)
		}
	case "objective":
		spec.Objective = d.objective(v)
	case "resources":
		spec.Resources = d.resources(v)
	}
}

// command reads a list of strings, or one string split like a shell would.
func (d *decoder) command(v *yaml.Node) []string {
	switch v.Kind {
	case yaml.SequenceNode:
		var argv []string
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.typeErr(item, "command", "a list of strings")
				return nil
			}
			argv = append(argv, item.Value)
		}
		return argv
	case yaml.ScalarNode:
		argv, err := splitCommand(v.Value)
		if err != nil {
			d.failf(v, "command", "field %q: %v", "command", err)
		}
		return argv
	}
	d.typeErr(v, "command", "a list of strings or a command line")
	return nil
}

// duration reads a Go duration ("10m", "1h30m") or a number of seconds.
func (d *decoder) duration(v *yaml.Node, field string) (time.Duration, bool) {
	const want = `a duration like "10m" or a number of seconds`
	if v.Kind != yaml.ScalarNode {
		d.typeErr(v, field, want)
		return 0, false
	}
	if tag := v.ShortTag(); tag == "!!int" || tag == "!!float" {
		var secs float64
		if err := v.Decode(&secs); err != nil || math.IsNaN(secs) || math.Abs(secs) >= math.MaxInt64/float64(time.Second) {
			d.typeErr(v, field, want)
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	t, err := time.ParseDuration(v.Value)
	if err != nil {
		d.typeErr(v, field, want)
		return 0, false
	}
	return t, true
}

func (d *decoder) sweep(v *yaml.Node) *cloudmlv1.Sweep {
	sw := &cloudmlv1.Sweep{}
	d.fields(v, "sweep", sweepFields, func(key string, v *yaml.Node) {
		switch key {
		case "grid":
			sw.Grid = d.grid(v)
		case "random":
			sw.Random = d.random(v)
		}
	})
	return sw
}

func (d *decoder) grid(v *yaml.Node) map[string]*cloudmlv1.ParamValues {
	grid := map[string]*cloudmlv1.ParamValues{}
	d.entries(v, "sweep.grid", func(name string, _, v *yaml.Node) {
		field := "sweep.grid." + name
		if v.Kind != yaml.SequenceNode {
			d.typeErr(v, field, "a list of values")
			return
		}
		pv := &cloudmlv1.ParamValues{Values: []string{}}
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.typeErr(item, field, "a list of values")
				return
			}
			pv.Values = append(pv.Values, item.Value)
		}
		grid[name] = pv
	})
	return grid
}

func (d *decoder) random(v *yaml.Node) *cloudmlv1.RandomSweep {
	rs := &cloudmlv1.RandomSweep{}
	d.fields(v, "sweep.random", randomFields, func(key string, v *yaml.Node) {
		field := "sweep.random." + key
		switch key {
		case "seed":
			rs.Seed, _ = d.integer(v, field, math.MinInt64, math.MaxInt64)
		case "count":
			n, _ := d.integer(v, field, math.MinInt32, math.MaxInt32)
			rs.Count = int32(n)
		case "params":
			rs.Params = map[string]*cloudmlv1.Range{}
			d.entries(v, field, func(name string, k, v *yaml.Node) {
				if r := d.rangeOf(k, v, field+"."+name); r != nil {
					rs.Params[name] = r
				}
			})
		}
	})
	return rs
}

// rangeOf reads {min, max, log, integer}; min and max are required.
func (d *decoder) rangeOf(k, v *yaml.Node, field string) *cloudmlv1.Range {
	r := &cloudmlv1.Range{}
	var hasMin, hasMax bool
	before := len(d.errs)
	d.fields(v, field, rangeFields, func(key string, v *yaml.Node) {
		switch key {
		case "min":
			r.Min, hasMin = d.float(v, field+".min")
		case "max":
			r.Max, hasMax = d.float(v, field+".max")
		case "log":
			r.Log, _ = d.boolean(v, field+".log")
		case "integer":
			r.Integer, _ = d.boolean(v, field+".integer")
		}
	})
	if len(d.errs) > before {
		return nil
	}
	if !hasMin || !hasMax {
		d.failf(k, field, "field %q: min and max are required", field)
		return nil
	}
	return r
}

func (d *decoder) objective(v *yaml.Node) *cloudmlv1.Objective {
	o := &cloudmlv1.Objective{}
	d.fields(v, "objective", objectiveFields, func(key string, v *yaml.Node) {
		switch key {
		case "metric":
			o.Metric, _ = d.str(v, "objective.metric")
		case "goal":
			s, ok := d.str(v, "objective.goal")
			switch strings.ToLower(s) {
			case "minimize", "min":
			case "maximize", "max":
				o.Maximize = true
			default:
				if ok {
					d.typeErr(v, "objective.goal", "minimize or maximize")
				}
			}
		}
	})
	return o
}

func (d *decoder) resources(v *yaml.Node) *cloudmlv1.Resources {
	r := &cloudmlv1.Resources{}
	d.fields(v, "resources", resourceFields, func(key string, v *yaml.Node) {
		switch key {
		case "cpus":
			r.Cpus, _ = d.float(v, "resources.cpus")
		case "memory":
			if v.Kind != yaml.ScalarNode {
				d.typeErr(v, "resources.memory", "bytes, or a number with a suffix Ki, Mi, Gi, K, M or G")
				return
			}
			n, err := parseMemory(v.Value)
			if err != nil {
				d.failf(v, "resources.memory", "field %q: %v", "resources.memory", err)
				return
			}
			r.MemoryBytes = n
		}
	})
	return r
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlErrorLine returns the line and text of a YAML syntax error. yaml.v3
// leaves the line out of some messages and gives the line before in others,
// so the line is found as the shortest prefix of the document that fails
// with the same message; yaml's own line is the fallback.
func yamlErrorLine(data []byte, err error) (int, string) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 1000 {
		return line, "bad YAML: " + msg
	}
	for n := 1; n <= len(lines); n++ {
		var node yaml.Node
		e := yaml.Unmarshal([]byte(strings.Join(lines[:n], "")), &node)
		if e == nil {
			continue
		}
		em := strings.TrimPrefix(e.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(em); m != nil {
			em = em[len(m[0]):]
		}
		if em == msg {
			return n, "bad YAML: " + msg
		}
	}
	return line, "bad YAML: " + msg
}
