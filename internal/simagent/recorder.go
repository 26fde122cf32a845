package simagent

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// Call names for the latencies a Recorder keeps. Callers outside the
// package (a benchmark timing GetJob) may record their own names.
const (
	CallRegister  = "Register"
	CallSession   = "Session" // open to SessionStarted received
	CallHeartbeat = "Heartbeat"
	CallStaging   = "ReportTask STAGING"
	CallRunning   = "ReportTask RUNNING"
	CallLogs      = "PublishLogs"
	CallSucceeded = "ReportTask SUCCEEDED"
	// CallReportTasks is one ReportTasks call of a node's batcher, which
	// carries its reports (each also recorded as above, from when it was
	// queued to its result).
	CallReportTasks = "ReportTasks"
)

// Sample is one timed call.
type Sample struct {
	// At is when the call began.
	At time.Time
	// Took is how long it took.
	Took time.Duration
}

// Recorder collects what simulated agents saw. It is safe for concurrent
// use; the zero value is not: use NewRecorder.
type Recorder struct {
	mu       sync.Mutex
	samples  map[string][]Sample
	runs     map[string]map[int32]int // job -> task index -> attempts run
	assigned []time.Time              // first receipt of each attempt, in order
	errs     map[string]int           // "call: code" -> count
	firstErr map[string]string        // "call: code" -> first message
	ready    []time.Time              // SessionStarted of each node's first session
	sessions int                      // sessions opened, first ones included
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		samples:  map[string][]Sample{},
		runs:     map[string]map[int32]int{},
		errs:     map[string]int{},
		firstErr: map[string]string{},
	}
}

// Observe records one call that began at start and ended now, and its
// error if any.
func (r *Recorder) Observe(call string, start time.Time, err error) {
	took := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples[call] = append(r.samples[call], Sample{At: start, Took: took})
	if err != nil {
		r.errorLocked(call, err)
	}
}

// Error records an error of call that is not a timed call.
func (r *Recorder) Error(call string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errorLocked(call, err)
}

func (r *Recorder) errorLocked(call string, err error) {
	key := call + ": " + status.Code(err).String()
	if r.errs[key] == 0 {
		r.firstErr[key] = err.Error()
	}
	r.errs[key]++
}

// Samples returns the samples of call that began in [from, to); a zero
// bound is open.
func (r *Recorder) Samples(call string, from, to time.Time) []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Sample
	for _, s := range r.samples[call] {
		if (from.IsZero() || !s.At.Before(from)) && (to.IsZero() || s.At.Before(to)) {
			out = append(out, s)
		}
	}
	return out
}

// Latencies returns the durations of call's samples that began in
// [from, to), sorted.
func (r *Recorder) Latencies(call string, from, to time.Time) []time.Duration {
	s := r.Samples(call, from, to)
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.Took
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Percentile returns the p-th percentile (0..100) of sorted durations, 0
// when there are none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p/100 + 0.5)
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// assignedOnce records the first receipt of an attempt on a node.
func (r *Recorder) assignedOnce(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.assigned = append(r.assigned, at)
}

// Assigned returns when each attempt first reached a node, in order of
// arrival (an attempt sent twice to the same node counts once).
func (r *Recorder) Assigned() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]time.Time(nil), r.assigned...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// ran records that a node started an attempt of a task (reported it
// RUNNING).
func (r *Recorder) ran(job string, task int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.runs[job]
	if m == nil {
		m = map[int32]int{}
		r.runs[job] = m
	}
	m[task]++
}

// Runs returns how many attempts of each task of job were run.
func (r *Recorder) Runs(job string) map[int32]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int32]int, len(r.runs[job]))
	for k, v := range r.runs[job] {
		out[k] = v
	}
	return out
}

// RunTwice counts the tasks of job run more than once.
func (r *Recorder) RunTwice(job string) int {
	n := 0
	for _, c := range r.Runs(job) {
		if c > 1 {
			n++
		}
	}
	return n
}

// sessionStarted records a session's SessionStarted; first says it is the
// node's first.
func (r *Recorder) sessionStarted(at time.Time, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions++
	if first {
		r.ready = append(r.ready, at)
	}
}

// Ready returns how many nodes have had a session started, and when the
// last of them did.
func (r *Recorder) Ready() (n int, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.ready {
		if t.After(last) {
			last = t
		}
	}
	return len(r.ready), last
}

// Reconnects returns how many sessions were opened beyond each node's
// first.
func (r *Recorder) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions - len(r.ready)
}

// Errors returns the error counts by "call: code", with the first message
// of each.
func (r *Recorder) Errors() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.errs))
	for k, n := range r.errs {
		out[k] = fmt.Sprintf("%d (first: %s)", n, r.firstErr[k])
	}
	return out
}

// ErrorCount returns the number of errors recorded.
func (r *Recorder) ErrorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.errs {
		n += c
	}
	return n
}
