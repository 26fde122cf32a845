package jobspec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// pcgStream is the second PCG seed word; the first is the sweep's seed.
const pcgStream = 0x636c6f75646d6c // "cloudml"

// expand enumerates the tasks of a validated sweep. Grid points are the
// cartesian product of the grid's values with names sorted and the last
// name varying fastest; for each grid point, Count random samples follow,
// drawn from one PCG stream seeded by Seed, each sample drawing its
// parameters in name order.
func expand(sw *cloudmlv1.Sweep) ([]map[string]string, error) {
	total := TaskCount(sw)
	if total == 0 {
		return nil, &Error{Field: "sweep", Msg: "sweep: zero tasks"}
	}
	names := sortedKeys(sw.GetGrid())
	points := 1
	for _, n := range names {
		points *= len(sw.Grid[n].Values)
	}
	samples := 1
	var rnd *rand.Rand
	var rnames []string
	if r := sw.GetRandom(); r != nil {
		samples = int(r.Count)
		rnd = rand.New(rand.NewPCG(uint64(r.Seed), pcgStream))
		rnames = sortedKeys(r.Params)
	}

	tasks := make([]map[string]string, 0, int(total))
	for g := 0; g < points; g++ {
		base := make(map[string]string, len(names))
		rem := g
		for i := len(names) - 1; i >= 0; i-- {
			vals := sw.Grid[names[i]].Values
			base[names[i]] = vals[rem%len(vals)]
			rem /= len(vals)
		}
		for s := 0; s < samples; s++ {
			params := make(map[string]string, len(base)+len(rnames))
			for k, v := range base {
				params[k] = v
			}
			for _, n := range rnames {
				params[n] = sample(rnd, sw.Random.Params[n])
			}
			tasks = append(tasks, params)
		}
	}
	if int64(len(tasks)) != total {
		return nil, fmt.Errorf("%w: expanded %d tasks, want %d", ErrInvalid, len(tasks), total)
	}
	return tasks, nil
}

// sample draws one value from r as the task will see it.
func sample(rnd *rand.Rand, r *cloudmlv1.Range) string {
	u := rnd.Float64()
	var v float64
	if r.Log {
		lo, hi := math.Log(r.Min), math.Log(r.Max)
		v = math.Exp(lo + u*(hi-lo))
	} else {
		v = r.Min + u*(r.Max-r.Min)
	}
	if r.Integer {
		return strconv.FormatInt(int64(math.Round(v)), 10)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}
