package metricjson

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestValue(t *testing.T) {
	tests := []struct {
		raw  string
		want float64
		err  bool
	}{
		{"0.5", 0.5, false},
		{" -3e2 ", -300, false},
		{`"NaN"`, math.NaN(), false},
		{`"Infinity"`, math.Inf(1), false},
		{`"-Infinity"`, math.Inf(-1), false},
		{"null", math.NaN(), false}, // Octave's jsonencode for NaN and ±Inf
		{`"0.5"`, 0, true},
		{`"inf"`, 0, true},
		{`"+Inf"`, 0, true},
		{"NaN", 0, true}, // not JSON
		{"1e400", 0, true},
		{"true", 0, true},
		{`{"x": 1}`, 0, true},
		{"[1]", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := Value([]byte(tt.raw))
		if (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrNotANumber)) {
			t.Errorf("Value(%s) error = %v, want error %v", tt.raw, err, tt.err)
			continue
		}
		if !cmp.Equal(got, tt.want, cmpopts.EquateNaNs()) {
			t.Errorf("Value(%s) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestMapRoundTrip(t *testing.T) {
	m := Map{"loss": 0.25, "big": 1e300, "nan": math.NaN(), "inf": math.Inf(1), "ninf": math.Inf(-1), "zero": 0}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"big":1e+300,"inf":"Infinity","loss":0.25,"nan":"NaN","ninf":"-Infinity","zero":0}`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	var got Map
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestMapUnmarshal(t *testing.T) {
	// null and the "+Inf"/"-Inf" an older store wrote are read too.
	var got Map
	if err := json.Unmarshal([]byte(`{"a": null, "b": "+Inf", "c": "-Inf", "d": 2}`), &got); err != nil {
		t.Fatal(err)
	}
	want := Map{"a": math.NaN(), "b": math.Inf(1), "c": math.Inf(-1), "d": 2}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"a": "x"}`, `{"a": [1]}`, `[1]`} {
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", bad, got)
		}
	}
}
