package jobspec

import (
	"errors"
	"fmt"
	"strings"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid job spec")

// MaxTasks is the most tasks one job may expand to (DefaultLimits().Tasks).
const MaxTasks = 100000

// ParamEnvPrefix starts the environment variable of every swept parameter.
const ParamEnvPrefix = "CLOUDML_PARAM_"

// Error is one problem in a job spec. It wraps ErrInvalid.
type Error struct {
	// File is the spec's file name; empty for a spec built from flags.
	File string
	// Line is the 1-based line of the field; 0 when unknown.
	Line int
	// Field is the dotted path of the field ("sweep.grid.lr"); may be empty.
	Field string
	// Msg says what is wrong, naming the field.
	Msg string
}

// Error formats the problem as "FILE:LINE: MSG" (or less, when unknown).
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	default:
		return e.Msg
	}
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// join returns nil, the single error, or all of them joined.
func join(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Parse reads a cloudml.yaml document. Unknown or malformed fields are errors
// that name the field and its line ("cloudml.yaml:7: unknown field \"paralelism\"").
// The spec is validated too, within DefaultLimits; its name is lower-cased and its code and data
// paths are kept as written (the client resolves local paths).
func Parse(data []byte, filename string) (*cloudmlv1.JobSpec, error) {
	d := &decoder{file: filename, lines: map[string]int{}}
	spec := d.document(data)
	if len(d.errs) > 0 {
		return nil, join(d.errs)
	}
	errs := validate(spec, DefaultLimits())
	for _, e := range errs {
		e.File, e.Line = filename, d.lineOf(e.Field)
	}
	if len(errs) > 0 {
		return nil, join(errs)
	}
	return spec, nil
}

// Validate checks a spec (from a file or from flags), within DefaultLimits.
func Validate(spec *cloudmlv1.JobSpec) error {
	return join(validate(spec, DefaultLimits()))
}

// Expand returns the params of every task, index order. A sweep with zero
// tasks is an error, and so is one of more than MaxTasks; other limits are
// Validate's and Check's, so that a job stored under other limits expands.
func Expand(spec *cloudmlv1.JobSpec) ([]map[string]string, error) {
	if errs := validateSweep(spec.GetSweep()); len(errs) > 0 {
		return nil, join(errs)
	}
	return expand(spec.GetSweep())
}

// ParamEnvName returns the environment variable that carries parameter
// name to a task: "CLOUDML_PARAM_" and the name upper-cased, with anything
// but A-Z, 0-9 and _ replaced by _.
func ParamEnvName(name string) string {
	var b strings.Builder
	b.WriteString(ParamEnvPrefix)
	for _, r := range strings.ToUpper(name) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
