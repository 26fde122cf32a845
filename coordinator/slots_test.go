package coordinator

import (
	"math"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestSlotsFor(t *testing.T) {
	for cpus, want := range map[float64]int32{0: 1, 0.5: 1, 1: 1, 1.01: 2, 4: 4, 1e12: math.MaxInt32 / 2} {
		if got := slotsFor(&cloudmlv1.JobSpec{Resources: &cloudmlv1.Resources{Cpus: cpus}}); got != want {
			t.Errorf("slotsFor(cpus %g) = %d, want %d", cpus, got, want)
		}
	}
}
