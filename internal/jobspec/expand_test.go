package jobspec

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func grid(kv ...any) map[string]*cloudmlv1.ParamValues {
	g := map[string]*cloudmlv1.ParamValues{}
	for i := 0; i < len(kv); i += 2 {
		g[kv[i].(string)] = &cloudmlv1.ParamValues{Values: kv[i+1].([]string)}
	}
	return g
}

func specWith(sw *cloudmlv1.Sweep) *cloudmlv1.JobSpec {
	return &cloudmlv1.JobSpec{Name: "t", Command: []string{"x"}, Sweep: sw}
}

func TestExpandNoSweep(t *testing.T) {
	got, err := Expand(specWith(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]map[string]string{{}}, got); diff != "" {
		t.Errorf("Expand (-want +got):\n%s", diff)
	}
}

func TestExpandGridOrder(t *testing.T) {
	sw := &cloudmlv1.Sweep{Grid: grid("lr", []string{"0.01", "0.1"}, "b", []string{"x", "y", "z"})}
	got, err := Expand(specWith(sw))
	if err != nil {
		t.Fatal(err)
	}
	// Names sorted (b, lr); the last (lr) varies fastest.
	want := []map[string]string{
		{"b": "x", "lr": "0.01"}, {"b": "x", "lr": "0.1"},
		{"b": "y", "lr": "0.01"}, {"b": "y", "lr": "0.1"},
		{"b": "z", "lr": "0.01"}, {"b": "z", "lr": "0.1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Expand (-want +got):\n%s", diff)
	}
}

func TestExpandCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		sw   *cloudmlv1.Sweep
		want int
	}{
		{"grid 4x2", &cloudmlv1.Sweep{Grid: grid("a", []string{"1", "2", "3", "4"}, "b", []string{"1", "2"})}, 8},
		{"grid 2 x random 3", &cloudmlv1.Sweep{
			Grid:   grid("a", []string{"1", "2"}),
			Random: &cloudmlv1.RandomSweep{Seed: 1, Count: 3, Params: map[string]*cloudmlv1.Range{"r": {Min: 0, Max: 1}}},
		}, 6},
		{"random only", &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{Count: 5, Params: map[string]*cloudmlv1.Range{"r": {Min: 0, Max: 1}}}}, 5},
		{"random without params repeats", &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{Count: 3}}, 3},
		{"empty sweep", &cloudmlv1.Sweep{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Expand(specWith(tc.sw))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("Expand gave %d tasks, want %d", len(got), tc.want)
			}
			if n := TaskCount(tc.sw); n != int64(tc.want) {
				t.Errorf("TaskCount = %d, want %d", n, tc.want)
			}
		})
	}
}

func TestExpandGridWithRandom(t *testing.T) {
	sw := &cloudmlv1.Sweep{
		Grid:   grid("a", []string{"1", "2"}),
		Random: &cloudmlv1.RandomSweep{Seed: 3, Count: 2, Params: map[string]*cloudmlv1.Range{"r": {Min: 0, Max: 1}}},
	}
	got, err := Expand(specWith(sw))
	if err != nil {
		t.Fatal(err)
	}
	var as []string
	seen := map[string]bool{}
	for _, p := range got {
		as = append(as, p["a"])
		seen[p["r"]] = true
	}
	if diff := cmp.Diff([]string{"1", "1", "2", "2"}, as); diff != "" {
		t.Errorf("grid values by task (-want +got):\n%s", diff)
	}
	if len(seen) != 4 {
		t.Errorf("random values %v, want 4 distinct draws", seen)
	}
}

func randomSweep(seed int64) *cloudmlv1.JobSpec {
	return specWith(&cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{
		Seed: seed, Count: 50,
		Params: map[string]*cloudmlv1.Range{
			"lr":     {Min: 0.001, Max: 0.3, Log: true},
			"epochs": {Min: 10, Max: 100, Integer: true},
			"mom":    {Min: 0.5, Max: 0.99},
		},
	}})
}

func TestExpandRandomReproducible(t *testing.T) {
	a, err := Expand(randomSweep(42))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Expand(randomSweep(42))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different values (-first +second):\n%s", diff)
	}
	c, err := Expand(randomSweep(43))
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same values")
	}

	// Values are in range and formatted as promised.
	lrLow, lrHigh := 0, 0
	for i, p := range a {
		lr, err := strconv.ParseFloat(p["lr"], 64)
		if err != nil || lr < 0.001 || lr > 0.3 {
			t.Errorf("task %d: lr = %q, want a number in [0.001, 0.3]", i, p["lr"])
		}
		if want := strconv.FormatFloat(lr, 'g', 6, 64); p["lr"] != want {
			t.Errorf("task %d: lr = %q, want %%g with 6 digits (%q)", i, p["lr"], want)
		}
		if lr < 0.0173 { // the geometric midpoint
			lrLow++
		} else {
			lrHigh++
		}
		ep, err := strconv.Atoi(p["epochs"])
		if err != nil || ep < 10 || ep > 100 {
			t.Errorf("task %d: epochs = %q, want an integer in [10, 100]", i, p["epochs"])
		}
		mom, err := strconv.ParseFloat(p["mom"], 64)
		if err != nil || mom < 0.5 || mom > 0.99 {
			t.Errorf("task %d: mom = %q, want a number in [0.5, 0.99]", i, p["mom"])
		}
	}
	// Log sampling puts about half the draws below the geometric midpoint
	// (a linear draw would put about 6% there).
	if lrLow < 10 || lrHigh < 10 {
		t.Errorf("log-uniform lr: %d below the geometric midpoint, %d above; want both >= 10", lrLow, lrHigh)
	}
}

func TestExpandRandomGolden(t *testing.T) {
	// Pins the sampling algorithm: a change here changes every existing
	// random sweep's values, so it must be deliberate.
	got, err := Expand(specWith(&cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{
		Seed: 7, Count: 2,
		Params: map[string]*cloudmlv1.Range{
			"a": {Min: 0, Max: 1},
			"b": {Min: 1, Max: 1000, Log: true, Integer: true},
		},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"a": "0.00854828", "b": "58"},
		{"a": "0.793405", "b": "94"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Expand (-want +got):\n%s", diff)
	}
}

func TestExpandInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		sw   *cloudmlv1.Sweep
		want string
	}{
		{"empty grid list", &cloudmlv1.Sweep{Grid: grid("lr", []string{}, "b", []string{"1"})}, "sweep.grid.lr: empty list gives zero tasks"},
		{"nil grid values", &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"lr": nil}}, "sweep.grid.lr: empty list gives zero tasks"},
		{"zero random count", &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{}}, "sweep.random.count: must be >= 1"},
		{"nil range", &cloudmlv1.Sweep{Random: &cloudmlv1.RandomSweep{Count: 1, Params: map[string]*cloudmlv1.Range{"x": nil}}}, "sweep.random.params.x: min and max are required"},
		{"too many", &cloudmlv1.Sweep{Grid: grid("a", make([]string, 1000), "b", make([]string, 1000))}, "1000000 tasks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Expand(specWith(tc.sw))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Expand = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}
