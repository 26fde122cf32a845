package store

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// encodeStrings are values that take every path of appendJSONString: plain
// ASCII, the characters encoding/json escapes (quotes, backslash, control
// bytes, the HTML-unsafe <, > and &, U+2028), other UTF-8 and invalid
// UTF-8.
var encodeStrings = []string{
	"", "job-abc123", "node-7", "a b", `say "hi"`, `back\slash`, "tab\there", "nl\n", "\x00\x1f\x7f", "a\x1fb",
	"<script>&amp;</script>", "a<b", "a>b", "a&b", "line\u2028sep\u2029", "héllo ☃ 日本", "bad\xffutf8\xc3", "s3://bucket/out/1",
	"attempt 1 failed (exit 1: boom)",
	// Strings of one class only: the scan meets no other byte to send it
	// down the right path.
	"\n", "\x01\x02", " ", "\x7f", `"`, `\`, "<", ">", "&", "\u2028", "\xff", "é",
}

// TestAppendJSONStringMatchesJSON: every string encodes as json.Marshal
// writes it, whichever path it takes.
func TestAppendJSONStringMatchesJSON(t *testing.T) {
	for _, s := range encodeStrings {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got[1:], want)
		}
	}
}

// encodeTimes are times with and without fractions and zones, the zero
// time, and one encoding/json refuses (year 10000).
var encodeTimes = []time.Time{
	{},
	time.Date(2026, 12, 6, 2, 30, 0, 0, time.UTC),
	time.Date(2026, 12, 6, 2, 30, 0, 123456789, time.UTC),
	time.Date(2026, 12, 6, 2, 30, 0, 100, time.FixedZone("x", 5*3600+30*60)),
	time.Date(1999, 1, 1, 0, 0, 0, 0, time.FixedZone("y", -8*3600)),
	time.Now(),
	time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
}

// TestFastEncodeMatchesJSON checks that Encode's hand-written task and
// attempt encoders write exactly what json.Marshal writes, on fixed edge
// cases and on random records built from them, and that Encode falls back
// to json.Marshal (and its error) where they cannot.
func TestFastEncodeMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string { return encodeStrings[rng.IntN(len(encodeStrings))] }
	tm := func() time.Time { return encodeTimes[rng.IntN(len(encodeTimes))] }
	num := func() int32 {
		return []int32{0, 1, -1, 7, 4096, math.MaxInt32, math.MinInt32}[rng.IntN(7)]
	}
	var tasks []*Task
	var attempts []*Attempt
	for range 2000 {
		task := &Task{JobID: str(), Index: num(), State: cloudmlv1.TaskState(rng.IntN(9)), Attempt: num(), Failures: num(), Reason: str(), Note: str()}
		switch rng.IntN(3) {
		case 1:
			task.Params = map[string]string{}
		case 2:
			task.Params = map[string]string{}
			for range 1 + rng.IntN(4) {
				task.Params[str()] = str()
			}
		}
		tasks = append(tasks, task)
		a := &Attempt{JobID: str(), Task: num(), Attempt: num(), NodeID: str(), Swarm: rng.IntN(2) == 0, Manager: str(),
			Slots: num(), State: cloudmlv1.TaskState(rng.IntN(9)), Lost: rng.IntN(2) == 0, ExitCode: num(), Message: str(),
			ResultsURL: str(), AssignTime: tm(), StartTime: tm(), EndTime: tm()}
		switch rng.IntN(3) {
		case 1:
			a.Metrics = Metrics{}
		case 2:
			a.Metrics = Metrics{"loss": 0.25, "nan": math.NaN(), "inf": math.Inf(1), "-inf": math.Inf(-1), str(): 1e21}
		}
		attempts = append(attempts, a)
	}
	fell := 0
	for _, task := range tasks {
		want, werr := json.Marshal(task)
		got, ok := appendTask(nil, task)
		if !ok {
			t.Fatalf("appendTask refused %+v", task)
		}
		if werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("task %+v:\n got %s\nwant %s (%v)", task, got, want, werr)
		}
	}
	for _, a := range attempts {
		want, werr := json.Marshal(a)
		got, ok := appendAttempt(nil, a)
		if !ok {
			fell++
			if werr == nil {
				t.Fatalf("appendAttempt refused %+v, which json.Marshal encodes as %s", a, want)
			}
			continue
		}
		if werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("attempt %+v:\n got %s\nwant %s (%v)", a, got, want, werr)
		}
	}
	if fell == 0 {
		t.Fatal("no attempt took the fallback: the test does not cover it")
	}
	// Encode itself: the fallback's error, and the fast bytes otherwise.
	if _, err := Encode(&Changes{Attempts: []*Attempt{{JobID: "j", AssignTime: encodeTimes[len(encodeTimes)-1]}}}); err == nil {
		t.Fatal("Encode accepted a time encoding/json refuses")
	}
	b, err := Encode(&Changes{Tasks: tasks[:1], Attempts: attempts[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ops) != 2 {
		t.Fatalf("Encode made %d ops of 2 records", len(b.ops))
	}
	for i, v := range []any{tasks[0], attempts[0]} {
		want, _ := json.Marshal(v)
		if !bytes.Equal(b.ops[i].val, want) {
			t.Fatalf("Encode wrote %s, json.Marshal %s", b.ops[i].val, want)
		}
	}
}
