package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestAdminCommands runs the token, credential and node removal commands
// against a real coordinator: a token registers one node and then says it
// is used; a teammate's credential lists jobs but may not make tokens, and
// is refused once revoked; a removed node is listed as removed.
func TestAdminCommands(t *testing.T) {
	p := startCluster(t, 1)
	admin := func(args ...string) ran {
		t.Helper()
		return runWith(t, p.c.DialOptions(), nil, args...)
	}
	r := admin("token", "create", "--label", "laptop")
	tok, err := pki.ParseToken(r.stdout)
	if r.code != ExitOK || err != nil || !strings.Contains(r.stderr, "single-use, expires in 14m") {
		t.Fatalf("token create: exit %d, stdout %q (%v), stderr %q", r.code, r.stdout, err, r.stderr)
	}
	noCert, err := grpc.NewClient(inproc.Target, p.c.Dialer(), grpc.WithTransportCredentials(p.c.CertCreds(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	for i, want := range []bool{true, false} {
		_, _, err := testutil.RegisterNode(t, noCert, &cloudmlv1.RegisterRequest{JoinToken: strings.TrimSpace(r.stdout), Hostname: "laptop", Slots: 1})
		if (err == nil) != want {
			t.Fatalf("registration %d with a single-use token: %v", i+1, err)
		}
	}
	if r := admin("token", "ls"); r.code != ExitOK || !strings.Contains(r.stdout, tok.ID) || !strings.Contains(r.stdout, "used") ||
		strings.Contains(r.stdout, tok.Secret) {
		t.Errorf("token ls: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	file := filepath.Join(t.TempDir(), "alice.config")
	if r := admin("credential", "create", "alice", "--file", file); r.code != ExitOK || !strings.Contains(r.stdout, "wrote client credential alice to "+file) {
		t.Fatalf("credential create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v, %v; want mode 0600", st, err)
	}
	alice := func(args ...string) ran {
		t.Helper()
		cfg, err := client.ConfigFromFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return runWith(t, []grpc.DialOption{p.c.Dialer()}, func(c *client.Config) { c.TransportCredentials = cfg.TransportCredentials }, args...)
	}
	if r := alice("list"); r.code != ExitOK {
		t.Errorf("alice's list: exit %d\n%s", r.code, r.stderr)
	}
	if r := alice("token", "create"); r.code != ExitError || !strings.Contains(r.stderr, "takes an admin credential") {
		t.Errorf("alice's token create: exit %d, stderr %q; want exit 1 saying it takes an admin credential", r.code, r.stderr)
	}
	if r := admin("credential", "ls"); r.code != ExitOK || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "admin") {
		t.Errorf("credential ls: exit %d\n%s", r.code, r.stdout)
	}
	if r := admin("credential", "revoke", "alice"); r.code != ExitOK {
		t.Fatalf("credential revoke: exit %d\n%s", r.code, r.stderr)
	}
	if r := alice("list"); r.code != ExitError || !strings.Contains(r.stderr, "was revoked") {
		t.Errorf("revoked alice's list: exit %d, stderr %q; want exit 1 saying it was revoked", r.code, r.stderr)
	}

	// The removed node's agent registers again with its used token, is
	// refused and stops: that is the point of removing it.
	p.c.ExpectAgentError("join token refused")
	if r := admin("cluster", "nodes", "rm", "node-1"); r.code != ExitOK || !strings.Contains(r.stdout, "removed node node-1 (host-1); 0 tasks rescheduled") {
		t.Fatalf("cluster nodes rm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := admin("cluster", "nodes"); !strings.Contains(r.stdout, "removed") {
		t.Errorf("cluster nodes after rm:\n%s", r.stdout)
	}
	if r := admin("cluster", "nodes", "rm", "node-9"); r.code != ExitError || !strings.Contains(r.stderr, `node "node-9" not found`) {
		t.Errorf("rm of an unknown node: exit %d, stderr %q", r.code, r.stderr)
	}
}
