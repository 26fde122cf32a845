package coordinator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
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
	cfg.Provider = ProviderLocal
	cfg.Local.Nodes = 1
	cfg.Local.AgentBinary = script
	cfg.Local.Env = []string{"FAKE_AGENT_OUT=" + out}
	cfg.Logger = testutil.Logger(t)
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
	cfg.Provider = ProviderLocal
	cfg.Local.AgentBinary = filepath.Join(t.TempDir(), "cloudml-agent")
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
