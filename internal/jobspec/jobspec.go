// Package jobspec reads cloudml.yaml into a cloudmlv1.JobSpec, validates
// specs, and expands a sweep into the parameters of each task. The client
// parses; the coordinator validates and expands, so both agree on indices.
package jobspec

import (
	"errors"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid job spec")

// Parse reads a cloudml.yaml document. Unknown or malformed fields are errors
// that name the field and its line ("cloudml.yaml:7: unknown field \"paralelism\"").
func Parse(data []byte, filename string) (*cloudmlv1.JobSpec, error) {
	panic("unimplemented")
}

// Validate checks a spec (from a file or from flags).
func Validate(spec *cloudmlv1.JobSpec) error {
	panic("unimplemented")
}

// Expand returns the params of every task, index order. A sweep with zero
// tasks is an error.
func Expand(spec *cloudmlv1.JobSpec) ([]map[string]string, error) {
	panic("unimplemented")
}
