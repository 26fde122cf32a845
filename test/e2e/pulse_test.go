package e2e

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pulsePidRE finds the pulse process's pid in the coordinator's log.
var pulsePidRE = regexp.MustCompile(`heartbeats answered by the pulse process: addr=\S+ pid=([0-9]+)`)

// TestHeartbeatsGoToThePulse runs a coordinator whose heartbeats are
// answered by its pulse process (--heartbeat-listen) with a node-down
// deadline of 3 s: cluster info names the pulse's port, the agent heartbeats there alone (it says so, and never
// that the pulse failed) and its node stays READY over three deadlines,
// so the pulse's beats reach the coordinator. Then the pulse process is
// killed: the coordinator says so, the agent falls back to its session's
// connection, the node stays READY over three deadlines more, and the
// coordinator has started the pulse again.
func TestHeartbeatsGoToThePulse(t *testing.T) {
	listen := freeAddr(t)
	c := startCluster(t, clusterOpts{nodes: 1, serveArgs: []string{
		"--heartbeat-listen", listen, "--heartbeat", "1s", "--node-down-after", "3s"}})
	_, port, _ := net.SplitHostPort(listen)
	if r := c.client("-o", "json", "cluster", "info"); r.Code != 0 || !strings.Contains(r.Stdout, `"heartbeatPort": `+port) {
		t.Errorf("cluster info does not name the pulse's port %s: %s%s", port, r.Stdout, r.Stderr)
	}
	m := pulsePidRE.FindStringSubmatch(c.log.String())
	if m == nil {
		t.Fatalf("the coordinator did not say it started its pulse process:\n%s", c.log.String())
	}
	pid, _ := strconv.Atoi(m[1])
	waitLog(t, c, "heartbeats go to the coordinator's pulse", 10*time.Second)

	stayReady := func(what string) {
		t.Helper()
		end := time.Now().Add(9 * time.Second) // three node-down deadlines
		for time.Now().Before(end) {
			r := c.client("-o", "json", "cluster", "nodes")
			if r.Code != 0 || !strings.Contains(r.Stdout, "NODE_STATE_READY") {
				t.Fatalf("%s: the node is not READY: %s%s", what, r.Stdout, r.Stderr)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if strings.Contains(c.log.String(), "node down") {
			t.Fatalf("%s: the coordinator marked the node down:\n%s", what, c.log.String())
		}
	}
	stayReady("heartbeats to the pulse")
	if strings.Contains(c.log.String(), "pulse failed a heartbeat") {
		t.Fatalf("the agent's heartbeats to the pulse failed:\n%s", c.log.String())
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the pulse process %d: %v", pid, err)
	}
	waitLog(t, c, "the pulse process ended", 10*time.Second)
	waitLog(t, c, "sending heartbeats on the session's connection", 10*time.Second)
	stayReady("heartbeats on the session after the pulse died")
	// Meanwhile the coordinator started it again, on the same address.
	if n := len(pulsePidRE.FindAllStringSubmatch(c.log.String(), -1)); n != 2 {
		t.Errorf("the coordinator said it started a pulse process %d times, want 2 (the first and one restart):\n%s", n, c.log.String())
	}
}

// waitLog waits until the coordinator's log (with its agents' and its
// pulse's) holds s.
func waitLog(t *testing.T, c *cluster, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(c.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q within %s:\n%s", s, within, c.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
