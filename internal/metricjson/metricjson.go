package metricjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// The strings that stand for non-finite values.
const (
	NaN    = "NaN"
	PosInf = "Infinity"
	NegInf = "-Infinity"
)

// ErrNotANumber is a value that is neither a number, nor null, nor one of
// NaN, PosInf and NegInf.
var ErrNotANumber = errors.New(`not a number, "NaN", "Infinity", "-Infinity" or null`)

// Value parses one JSON value of a metrics object.
func Value(raw []byte) (float64, error) {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "null":
		return math.NaN(), nil
	case `"` + NaN + `"`:
		return math.NaN(), nil
	case `"` + PosInf + `"`:
		return math.Inf(1), nil
	case `"` + NegInf + `"`:
		return math.Inf(-1), nil
	}
	if len(raw) == 0 || raw[0] == '"' || raw[0] == '{' || raw[0] == '[' {
		return 0, ErrNotANumber
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, ErrNotANumber
	}
	return f, nil
}

// Format is v as a JSON value: a number, or NaN, PosInf or NegInf as a
// string.
func Format(v float64) json.RawMessage {
	switch {
	case math.IsNaN(v):
		return json.RawMessage(`"` + NaN + `"`)
	case math.IsInf(v, 1):
		return json.RawMessage(`"` + PosInf + `"`)
	case math.IsInf(v, -1):
		return json.RawMessage(`"` + NegInf + `"`)
	}
	b, _ := json.Marshal(v) // finite: cannot fail
	return b
}

// Map is a metrics object whose JSON form keeps NaN and ±Inf (as strings).
type Map map[string]float64

// MarshalJSON writes m with its names sorted, non-finite values as strings.
func (m Map) MarshalJSON() ([]byte, error) {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = Format(v)
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what Value accepts, and also "+Inf" and "-Inf",
// which stores written before this package held.
func (m *Map) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(Map, len(raw))
	for k, r := range raw {
		f, err := Value(r)
		if err != nil {
			switch string(bytes.TrimSpace(r)) {
			case `"+Inf"`:
				f, err = math.Inf(1), nil
			case `"-Inf"`:
				f, err = math.Inf(-1), nil
			}
		}
		if err != nil {
			return fmt.Errorf("metric %q is %s: %w", k, bytes.TrimSpace(r), err)
		}
		out[k] = f
	}
	*m = out
	return nil
}
