package jobspec

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse or Expand panic, and that
// every failure wraps ErrInvalid.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullSpec))
	f.Add([]byte("name: a\ncommand: x 'y z'\nsweep: {grid: {a: [1, 2]}, random: {count: 2, params: {b: {min: 1, max: 2}}}}\n"))
	f.Add([]byte("name: a\ncommand: [x]\ntimeout: 1e300\nresources: {memory: 99999999999Ti}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(data, "f.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %q does not wrap ErrInvalid", err)
			}
			return
		}
		if TaskCount(spec.Sweep) > 1000 {
			return
		}
		tasks, err := Expand(spec)
		if err != nil {
			t.Fatalf("Expand of a parsed spec: %v", err)
		}
		if int64(len(tasks)) != TaskCount(spec.Sweep) {
			t.Fatalf("Expand gave %d tasks, TaskCount %d", len(tasks), TaskCount(spec.Sweep))
		}
	})
}
