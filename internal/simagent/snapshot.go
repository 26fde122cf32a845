package simagent

import (
	"maps"
	"slices"
	"time"
)

// Snapshot is everything a Recorder holds, in exported fields, so that a
// fleet run in another process can hand its measurements back as JSON
// (a benchmark that runs its simulated agents in a child process).
type Snapshot struct {
	// Samples are the timed calls by call name.
	Samples map[string][]Sample `json:"samples"`
	// Runs counts the attempts run, by job and task index.
	Runs map[string]map[int32]int `json:"runs"`
	// Assigned are the first receipts of each attempt.
	Assigned []time.Time `json:"assigned"`
	// Errors counts errors by "call: code"; FirstErrors holds the first
	// message of each.
	Errors      map[string]int    `json:"errors"`
	FirstErrors map[string]string `json:"first_errors"`
	// Ready are the SessionStarted times of each node's first session.
	Ready []time.Time `json:"ready"`
	// Sessions counts the sessions opened, first ones included.
	Sessions int `json:"sessions"`
}

// Snapshot copies what r holds.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{
		Samples:     make(map[string][]Sample, len(r.samples)),
		Runs:        make(map[string]map[int32]int, len(r.runs)),
		Assigned:    slices.Clone(r.assigned),
		Errors:      maps.Clone(r.errs),
		FirstErrors: maps.Clone(r.firstErr),
		Ready:       slices.Clone(r.ready),
		Sessions:    r.sessions,
	}
	for call, v := range r.samples {
		s.Samples[call] = slices.Clone(v)
	}
	for job, m := range r.runs {
		s.Runs[job] = maps.Clone(m)
	}
	return s
}

// FromSnapshot returns a Recorder holding what s holds; it takes s's maps
// and slices, so s must not be used after.
func FromSnapshot(s Snapshot) *Recorder {
	r := NewRecorder()
	maps.Copy(r.samples, s.Samples)
	maps.Copy(r.runs, s.Runs)
	maps.Copy(r.errs, s.Errors)
	maps.Copy(r.firstErr, s.FirstErrors)
	r.assigned, r.ready, r.sessions = s.Assigned, s.Ready, s.Sessions
	return r
}
