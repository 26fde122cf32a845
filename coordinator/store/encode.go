package store

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// Tasks and attempts are the records every report writes (three or four of
// each per attempt), and Encode runs under the coordinator's lock: with
// encoding/json's reflection they took about 40 µs a record, half of it
// growing the handler goroutine's stack. appendTask and appendAttempt
// write the very bytes json.Marshal writes for them (same field order,
// omitempty and omitzero, HTML-safe escaping, sorted map keys; see
// TestFastEncodeMatchesJSON), so the stored format is unchanged and a
// record written either way reads the same. What they do not handle
// themselves (a string that needs escaping, metrics) goes through
// encoding/json; a time encoding/json would refuse makes them report !ok,
// and Encode falls back to json.Marshal for the record, error included.

// appendTask appends t's JSON to b; ok is false when it cannot (then b is
// garbage and the caller uses json.Marshal).
func appendTask(b []byte, t *Task) (_ []byte, ok bool) {
	b = append(b, `{"job_id":`...)
	b = appendJSONString(b, t.JobID)
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(t.Index), 10)
	if len(t.Params) > 0 {
		b = append(b, `,"params":{`...)
		keys := make([]string, 0, len(t.Params))
		for k := range t.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, t.Params[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"state":`...)
	b = strconv.AppendInt(b, int64(t.State), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"failures":`...)
	b = strconv.AppendInt(b, int64(t.Failures), 10)
	if t.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, t.Reason)
	}
	if t.Note != "" {
		b = append(b, `,"note":`...)
		b = appendJSONString(b, t.Note)
	}
	return append(b, '}'), true
}

// appendAttempt appends a's JSON to b; ok is false when it cannot (then b
// is garbage and the caller uses json.Marshal).
func appendAttempt(b []byte, a *Attempt) (_ []byte, ok bool) {
	b = append(b, `{"job_id":`...)
	b = appendJSONString(b, a.JobID)
	b = append(b, `,"task":`...)
	b = strconv.AppendInt(b, int64(a.Task), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"node_id":`...)
	b = appendJSONString(b, a.NodeID)
	if a.Swarm {
		b = append(b, `,"swarm":true`...)
	}
	if a.Manager != "" {
		b = append(b, `,"manager":`...)
		b = appendJSONString(b, a.Manager)
	}
	b = append(b, `,"slots":`...)
	b = strconv.AppendInt(b, int64(a.Slots), 10)
	b = append(b, `,"state":`...)
	b = strconv.AppendInt(b, int64(a.State), 10)
	if a.Lost {
		b = append(b, `,"lost":true`...)
	}
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(a.ExitCode), 10)
	if a.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, a.Message)
	}
	if len(a.Metrics) > 0 {
		m, err := json.Marshal(a.Metrics)
		if err != nil {
			return b, false
		}
		b = append(b, `,"metrics":`...)
		b = append(b, m...)
	}
	if a.ResultsURL != "" {
		b = append(b, `,"results_url":`...)
		b = appendJSONString(b, a.ResultsURL)
	}
	b = append(b, `,"assign_time":`...)
	if b, ok = appendJSONTime(b, a.AssignTime); !ok {
		return b, false
	}
	if !a.StartTime.IsZero() {
		b = append(b, `,"start_time":`...)
		if b, ok = appendJSONTime(b, a.StartTime); !ok {
			return b, false
		}
	}
	if !a.EndTime.IsZero() {
		b = append(b, `,"end_time":`...)
		if b, ok = appendJSONTime(b, a.EndTime); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it; ok is
// false for a time it refuses.
func appendJSONTime(b []byte, t time.Time) (_ []byte, ok bool) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}

// appendJSONString appends s as encoding/json writes it: as it is when
// every byte is printable ASCII that needs no escape (the common case),
// through json.Marshal otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
