package coordinator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestRunStartsLocalAgents runs the whole role on a real loopback port with
// the local provider pointed at a fake agent that records its argv.
func TestRunStartsLocalAgents(t *testing.T) {
	script, err := filepath.Abs("provider/local/testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.StateDir = t.TempDir()
	cfg.DefaultBucket = "file:///tmp/cloudml-test-bucket"
	cfg.Logger = testutil.Logger(t)
	cfg.Provider = newLocal(t, local.Config{AgentBinary: script, Env: []string{"FAKE_AGENT_OUT=" + out}, WorkDir: filepath.Join(cfg.StateDir, "nodes")})
	cfg.Nodes = 1
	cfg.AdminConfig = filepath.Join(cfg.StateDir, "admin.config")
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	var args, token []byte
	waitFor(t, "the fake agent", func() bool {
		files, _ := filepath.Glob(filepath.Join(out, "args-[0-9]*"))
		if len(files) == 0 {
			return false
		}
		args, err = os.ReadFile(files[0])
		if err != nil {
			return false
		}
		token, err = os.ReadFile(strings.Replace(files[0], "args-", "token-", 1))
		return err == nil
	})
	argv := strings.Fields(string(args))
	if len(argv) < 4 || argv[1] != c.Addr() || strings.HasSuffix(c.Addr(), ":0") ||
		argv[3] != filepath.Join(cfg.StateDir, "nodes", "node-1") || strings.Contains(string(args), pki.TokenPrefix) {
		t.Errorf("agent argv = %v (addr %s), want the address and work dir and no token", argv, c.Addr())
	}
	tok, err := pki.ParseToken(string(token))
	if err != nil || tok.CAFingerprint != c.CAFingerprint() {
		t.Fatalf("agent's %s = %q (%v), want a token that pins the CA", pki.JoinTokenEnv, token, err)
	}
	c.trust.mu.RLock()
	rec := c.trust.tokens[tok.ID]
	c.trust.mu.RUnlock()
	if rec == nil || rec.Uses != 1 || rec.ExpireTime.Sub(rec.CreateTime) > defaultTokenTTL {
		t.Errorf("the provider's token = %+v, want single-use and short-lived", rec)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestRunFailsWithoutAgentBinary(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.StateDir = t.TempDir()
	cfg.Provider = newLocal(t, local.Config{AgentBinary: filepath.Join(t.TempDir(), "cloudml-agent"), WorkDir: t.TempDir()})
	cfg.Nodes = 1
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Run = %v, want an error saying to run make build", err)
	}
}

func newLocal(t *testing.T, cfg local.Config) *local.Provider {
	t.Helper()
	p, err := local.New(cfg, testutil.Logger(t).Named("local"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunDrivesTheProvider runs the role with a fake provider that needs
// preparing, as netns does: Run prepares it before listening, listens for
// its nodes too, starts it with that address and the CA, deletes the stray
// it had, asks for Nodes nodes (each with its own token that pins the CA),
// reconciles periodically, and closes it at the end.
func TestRunDrivesTheProvider(t *testing.T) {
	fake := &providertest.Preparing{Fake: providertest.NewFake("fake"), Prepared: provider.Prepared{NodeListen: "127.0.0.1:0", PeerCIDRs: []string{"10.9.0.0/24"}}}
	fake.Add(provider.Node{ID: "left-over"})
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.AdvertiseAddr = "coord.example.com:7443"
	cfg.StateDir = t.TempDir()
	cfg.AdminConfig = filepath.Join(cfg.StateDir, "admin.config")
	cfg.Logger = testutil.Logger(t)
	cfg.Provider = fake
	cfg.Nodes = 2
	cfg.ReconcileInterval = 10 * time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	var nodes []provider.Node
	waitFor(t, "two nodes", func() bool {
		nodes, _ = fake.List(ctx)
		return len(nodes) == 2 && nodes[0].ID != "left-over"
	})
	tg := fake.Target()
	if fake.Prepares() != 1 || tg.Addr == c.Addr() || !strings.HasPrefix(tg.Addr, "127.0.0.1:") || tg.Advertise != cfg.AdvertiseAddr || string(tg.CACertPEM) != string(c.CACertPEM()) {
		t.Errorf("provider prepared %d times, started with %+v; want once, its own listener (not %s), the advertised address and the CA", fake.Prepares(), tg, c.Addr())
	}
	if got := c.cfg.SwarmPeerCIDRs; len(got) != 1 || got[0] != "10.9.0.0/24" {
		t.Errorf("swarm peers = %v, want the provider's", got)
	}
	for _, n := range nodes {
		tok, err := pki.ParseToken(fake.Token(n.ID))
		if err != nil || tok.CAFingerprint != c.CAFingerprint() || n.Pool != provider.DefaultPool {
			t.Errorf("node %+v: token %v (%v), want one pinning the CA, in the default pool", n, tok, err)
		}
	}
	fake.Add(provider.Node{ID: "made-by-hand"})
	waitFor(t, "the periodic reconcile to delete a stray", func() bool {
		nodes, _ = fake.List(ctx)
		return len(nodes) == 2
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if !fake.Closed() {
		t.Error("Run returned without closing the provider")
	}
}

func TestClusterInfoNamesTheProvider(t *testing.T) {
	h := start(t, "", func(c *Config) { c.Provider = providertest.NewFake("fake") })
	info, err := h.cluster.GetClusterInfo(ctxT(t), &cloudmlv1.GetClusterInfoRequest{})
	if err != nil || info.GetProvider() != "fake" {
		t.Errorf("GetClusterInfo = %v, %v; want provider fake", info, err)
	}
}

func TestRunWithProviderNoneAndNodesFails(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.StateDir = t.TempDir()
	cfg.Nodes = 1
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Run(context.Background()); !errors.Is(err, provider.ErrUnsupported) {
		t.Errorf("Run with provider none and 1 node = %v, want ErrUnsupported", err)
	}
}
