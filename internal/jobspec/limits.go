package jobspec

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// randomValueBytes bounds the text of one sampled random parameter: an
// int64 or a float formatted with 6 significant digits.
const randomValueBytes = 24

// Limits bound the size of a job spec and of what it expands to. They keep
// a hostile spec from filling the coordinator's disk or memory and keep
// every Assignment of a job far below what an agent receives
// (grpcopt.MaxMsgBytes), so no single job can wedge a node.
//
// DefaultLimits are also the most any coordinator accepts: clients check
// them before they upload anything, so a coordinator may lower them but
// never raise them. A field left zero means its default.
type Limits struct {
	// SpecBytes bounds the encoded spec, grid values included; default 4 MiB.
	SpecBytes int
	// EnvVars bounds the number of env variables; default 1,000.
	EnvVars int
	// EnvKeyBytes bounds one env variable's name; default 256.
	EnvKeyBytes int
	// EnvValueBytes bounds one env variable's value; default 64 KiB (Linux
	// refuses to exec with a NAME=value string over 128 KiB).
	EnvValueBytes int
	// EnvBytes bounds the names and values of all env variables together;
	// default 1 MiB (with the command, within Linux's 2 MiB for argv and
	// environment at exec).
	EnvBytes int
	// Args bounds the number of command arguments, the program included;
	// default 4,096.
	Args int
	// CommandBytes bounds the command's arguments together; default 128 KiB.
	CommandBytes int
	// DataSources bounds the number of data inputs; default 1,000.
	DataSources int
	// Params bounds the number of swept parameters, grid and random
	// together; default 64.
	Params int
	// ParamValueBytes bounds one parameter's name and each of its grid
	// values; default 4 KiB.
	ParamValueBytes int
	// Tasks bounds the number of tasks a sweep expands to; default 100,000.
	Tasks int
	// SweepBytes bounds the parameters of all tasks together (every task's
	// names and values: what the coordinator keeps per task and returns
	// with the job); default 16 MiB.
	SweepBytes int64
}

// DefaultLimits returns the limits a real user never reaches: the most a
// coordinator accepts.
func DefaultLimits() Limits {
	return Limits{
		SpecBytes:       4 << 20,
		EnvVars:         1000,
		EnvKeyBytes:     256,
		EnvValueBytes:   64 << 10,
		EnvBytes:        1 << 20,
		Args:            4096,
		CommandBytes:    128 << 10,
		DataSources:     1000,
		Params:          64,
		ParamValueBytes: 4 << 10,
		Tasks:           MaxTasks,
		SweepBytes:      16 << 20,
	}
}

// Validate fills zero fields with their defaults and refuses negative ones
// and any above its default.
func (l *Limits) Validate() error {
	d := DefaultLimits()
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"spec bytes", &l.SpecBytes, d.SpecBytes},
		{"env vars", &l.EnvVars, d.EnvVars},
		{"env key bytes", &l.EnvKeyBytes, d.EnvKeyBytes},
		{"env value bytes", &l.EnvValueBytes, d.EnvValueBytes},
		{"env bytes", &l.EnvBytes, d.EnvBytes},
		{"args", &l.Args, d.Args},
		{"command bytes", &l.CommandBytes, d.CommandBytes},
		{"data sources", &l.DataSources, d.DataSources},
		{"params", &l.Params, d.Params},
		{"param value bytes", &l.ParamValueBytes, d.ParamValueBytes},
		{"tasks", &l.Tasks, d.Tasks},
	}
	for _, f := range ints {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 || *f.v > f.def {
			return fmt.Errorf("spec limit %s = %d: want 1..%d (clients check the default, so it can be lowered, not raised)", f.name, *f.v, f.def)
		}
	}
	if l.SweepBytes == 0 {
		l.SweepBytes = d.SweepBytes
	}
	if l.SweepBytes < 0 || l.SweepBytes > d.SweepBytes {
		return fmt.Errorf("spec limit sweep bytes = %d: want 1..%d (clients check the default, so it can be lowered, not raised)", l.SweepBytes, d.SweepBytes)
	}
	return nil
}

// Check validates spec like Validate, against l instead of the defaults.
func (l Limits) Check(spec *cloudmlv1.JobSpec) error {
	return join(validate(spec, l))
}

// checkLimits adds a problem for every limit spec exceeds. It runs after
// the structural checks, on a non-nil spec.
func checkLimits(p *problems, spec *cloudmlv1.JobSpec, l Limits) {
	if n := proto.Size(spec); n > l.SpecBytes {
		p.add("spec", "%d bytes encoded, more than the limit of %d bytes per job spec", n, l.SpecBytes)
	}
	if n := len(spec.Env); n > l.EnvVars {
		p.add("env", "%d variables, more than the limit of %d", n, l.EnvVars)
	}
	envBytes := 0
	for _, k := range sortedKeys(spec.Env) {
		v := spec.Env[k]
		envBytes += len(k) + len(v)
		if len(k) > l.EnvKeyBytes {
			p.add("env."+k, "name of %d bytes, more than the limit of %d bytes per env name", len(k), l.EnvKeyBytes)
		}
		if len(v) > l.EnvValueBytes {
			p.add("env."+k, "value of %d bytes, more than the limit of %d bytes per env value", len(v), l.EnvValueBytes)
		}
	}
	if envBytes > l.EnvBytes {
		p.add("env", "%d bytes of names and values, more than the limit of %d bytes for all env variables", envBytes, l.EnvBytes)
	}
	if n := len(spec.Command); n > l.Args {
		p.add("command", "%d arguments, more than the limit of %d", n, l.Args)
	}
	cmdBytes := 0
	for _, a := range spec.Command {
		cmdBytes += len(a)
	}
	if cmdBytes > l.CommandBytes {
		p.add("command", "%d bytes of arguments, more than the limit of %d bytes per command", cmdBytes, l.CommandBytes)
	}
	if n := len(spec.Data); n > l.DataSources {
		p.add("data", "%d inputs, more than the limit of %d", n, l.DataSources)
	}
	checkSweepLimits(p, spec.Sweep, l)
}

// checkSweepLimits bounds the number and size of parameters, the tasks,
// and the bytes of every task's parameters together, without expanding.
func checkSweepLimits(p *problems, sw *cloudmlv1.Sweep, l Limits) {
	if sw == nil {
		return
	}
	if n := len(sw.Grid) + len(sw.GetRandom().GetParams()); n > l.Params {
		p.add("sweep", "%d parameters, more than the limit of %d", n, l.Params)
	}
	names := append(sortedKeys(sw.Grid), sortedKeys(sw.GetRandom().GetParams())...)
	for _, name := range names {
		if len(name) > l.ParamValueBytes {
			p.add("sweep", "parameter name of %d bytes, more than the limit of %d bytes per parameter value", len(name), l.ParamValueBytes)
		}
	}
	for _, name := range sortedKeys(sw.Grid) {
		for i, v := range sw.Grid[name].GetValues() {
			if len(v) > l.ParamValueBytes {
				p.add("sweep.grid."+name, "value %d is %d bytes, more than the limit of %d bytes per parameter value", i, len(v), l.ParamValueBytes)
				break
			}
		}
	}
	switch tasks := TaskCount(sw); {
	case tasks > MaxTasks:
		return // validateSweep said so
	case tasks > int64(l.Tasks):
		p.add("sweep", "%d tasks, more than the limit of %d", tasks, l.Tasks)
		return
	}
	if n := SweepBytes(sw); n > l.SweepBytes {
		p.add("sweep", "the tasks' parameters come to %d bytes, more than the limit of %d bytes for all tasks of a job (fewer tasks or shorter values)", n, l.SweepBytes)
	}
}

// SweepBytes returns the bytes of every task's parameter names and values
// together, as the sweep expands, without expanding it. Random values count
// at their longest text. The sweep must have at most MaxTasks tasks.
func SweepBytes(sw *cloudmlv1.Sweep) int64 {
	tasks := TaskCount(sw)
	if tasks == 0 {
		return 0
	}
	var n int64
	for name, pv := range sw.GetGrid() {
		vals := pv.GetValues()
		sum := int64(0)
		for _, v := range vals {
			sum += int64(len(v))
		}
		// Each value is taken by tasks/len(vals) tasks.
		n += tasks*int64(len(name)) + tasks/int64(len(vals))*sum
	}
	for name := range sw.GetRandom().GetParams() {
		n += tasks * int64(len(name)+randomValueBytes)
	}
	return n
}
