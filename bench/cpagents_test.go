package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/simagent"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
)

// TestMain lets the test binary be its own cp-agents child, as the bench
// binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == cpAgentsCmd {
		if err := agentsMain(os.Args[2:]); err != nil {
			os.Stderr.WriteString("cp-agents: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestReadAgentsReport(t *testing.T) {
	rec := simagent.NewRecorder()
	rec.Observe(simagent.CallHeartbeat, time.Now().Add(-time.Millisecond), nil)
	report, err := json.Marshal(rec.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	snap, err := readAgentsReport(strings.NewReader("ready\n"+string(report)+"\n"), ready)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	default:
		t.Error("ready not closed after the ready line")
	}
	if n := len(simagent.FromSnapshot(snap).Latencies(simagent.CallHeartbeat, time.Time{}, time.Time{})); n != 1 {
		t.Errorf("%d heartbeats in the report, want 1", n)
	}

	for name, out := range map[string]string{
		"exited before ready": "",
		"not ready":           "oops\n",
		"stopped mid-report":  "ready\n" + string(report[:len(report)/2]),
	} {
		if _, err := readAgentsReport(strings.NewReader(out), make(chan struct{})); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestAgentsProc runs a few simulated agents in a child process against
// a coordinator in the test process over TCP and mutual TLS, and reads
// back what they recorded.
func TestAgentsProc(t *testing.T) {
	addr, admin := inproc.ServeTCP(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only a hang's bound
	defer cancel()
	tok, err := admin.CreateToken(ctx, client.TokenOptions{Uses: -1, TTL: time.Hour, Label: "bench test"})
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 3
	p, err := startAgentsProc(agentsConfig{addr: addr, token: tok.GetToken(), nodes: nodes, slots: 1,
		prefix: "probe", heartbeat: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.waitReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	if p.pid() == os.Getpid() {
		t.Error("the agents run in the test's own process")
	}
	rec, err := p.stop()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := rec.Ready(); n != nodes {
		t.Errorf("%d nodes ready in the report, want %d", n, nodes)
	}
	if n := len(rec.Latencies(simagent.CallRegister, time.Time{}, time.Time{})); n != nodes {
		t.Errorf("%d registrations in the report, want %d", n, nodes)
	}
	if errs := rec.Errors(); len(errs) > 0 {
		t.Errorf("the agents saw errors: %v", errs)
	}
	ns, err := admin.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != nodes || !strings.HasPrefix(ns[0].GetHostname(), "probe-") {
		t.Errorf("the coordinator has %d nodes (%v), want %d named probe-*", len(ns), ns, nodes)
	}
}
