// Package jobspec reads cloudml.yaml into a cloudmlv1.JobSpec, validates
// specs, and expands a sweep into the parameters of each task. The client
// parses; the coordinator validates and expands, so both agree on indices.
//
// Every problem is an *Error wrapping ErrInvalid. Errors from Parse say
// where the field is ("cloudml.yaml:7: unknown field ..."); several
// problems are joined with errors.Join, one per line.
package jobspec
