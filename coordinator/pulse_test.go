package coordinator

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/pulse"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestPulseBeatsCountForCurrentCertificatesOnly: a beat the pulse process
// answered moves the node's last-seen time to when it arrived, never back;
// one with another serial, of an unknown node, or of a removed node
// changes nothing.
func TestPulseBeatsCountForCurrentCertificatesOnly(t *testing.T) {
	h := start(t, "")
	a := newAgent(t, h, 1)
	leaf, err := x509.ParseCertificate(a.cred.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	serial := pki.SerialOf(leaf)
	at := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	seen := func() time.Time { return h.c.live.lastSeen(a.id) }

	h.c.pulseBeat(pulse.Beat{Node: a.id, Serial: serial, At: at.UnixNano()})
	if !seen().Equal(at) {
		t.Fatalf("last seen %s after a beat that arrived at %s", seen(), at)
	}
	h.c.pulseBeat(pulse.Beat{Node: a.id, Serial: serial, At: at.Add(-time.Second).UnixNano()})
	if !seen().Equal(at) {
		t.Errorf("an older beat moved last seen back to %s", seen())
	}
	h.c.pulseBeat(pulse.Beat{Node: a.id, Serial: "beef", At: at.Add(time.Second).UnixNano()})
	h.c.pulseBeat(pulse.Beat{Node: "node-99", Serial: serial, At: at.Add(time.Second).UnixNano()})
	if !seen().Equal(at) || !h.c.live.lastSeen("node-99").IsZero() {
		t.Errorf("a beat of another certificate or node counted: last seen %s", seen())
	}
	if _, err := h.cluster.RemoveNode(ctxT(t), &cloudmlv1.RemoveNodeRequest{NodeId: a.id}); err != nil {
		t.Fatal(err)
	}
	before := seen()
	h.c.pulseBeat(pulse.Beat{Node: a.id, Serial: serial, At: at.Add(time.Hour).UnixNano()})
	if !seen().Equal(before) {
		t.Errorf("a removed node's beat counted: last seen %s", seen())
	}
}

// TestConfigNeedsAPulseCommand: a heartbeat address without a command to
// start the pulse process is refused.
func TestConfigNeedsAPulseCommand(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.HeartbeatListen = "127.0.0.1:0"
	if err := cfg.Validate(); err == nil {
		t.Fatal("a heartbeat address with no pulse command was accepted")
	}
	cfg.PulseCommand = []string{"coordinator", "pulse"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
