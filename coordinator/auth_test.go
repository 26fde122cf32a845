package coordinator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestBadJoinTokensCreateNothing: a wrong, expired, used, revoked or
// foreign token is UNAUTHENTICATED and registers no node.
func TestBadJoinTokensCreateNothing(t *testing.T) {
	h := start(t, "")
	mk := func(req *cloudmlv1.CreateJoinTokenRequest) string {
		resp, err := h.cluster.CreateJoinToken(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetToken()
	}
	used := mk(&cloudmlv1.CreateJoinTokenRequest{})
	if _, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: used, Slots: 1}); err != nil {
		t.Fatalf("first use of a single-use token: %v", err)
	}
	expired := mk(&cloudmlv1.CreateJoinTokenRequest{Ttl: durationpb.New(time.Millisecond)})
	revoked := mk(&cloudmlv1.CreateJoinTokenRequest{})
	rt, _ := pki.ParseToken(revoked)
	if _, err := h.cluster.RevokeJoinToken(ctxT(t), &cloudmlv1.RevokeJoinTokenRequest{Id: rt.ID}); err != nil {
		t.Fatal(err)
	}
	good, _ := pki.ParseToken(mk(&cloudmlv1.CreateJoinTokenRequest{}))
	wrongSecret := pki.Token{CAFingerprint: good.CAFingerprint, ID: good.ID, Secret: strings.Repeat("0", 32)}.String()
	foreign := pki.Token{CAFingerprint: strings.Repeat("ab", 32), ID: good.ID, Secret: good.Secret}.String()
	waitFor(t, "the short token to expire", func() bool {
		et, _ := pki.ParseToken(expired)
		h.c.trust.mu.RLock()
		defer h.c.trust.mu.RUnlock()
		return tokenState(h.c.trust.tokens[et.ID], time.Now()) == "expired"
	})
	for name, tc := range map[string]struct{ token, want string }{
		"wrong secret":       {wrongSecret, "invalid join token"},
		"another CA's token": {foreign, "invalid join token"},
		"not a token":        {"wrong", "not a CloudML join token"},
		"already used":       {used, "is used"},
		"expired":            {expired, "is expired"},
		"revoked":            {revoked, "is revoked"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tc.token, Slots: 1})
			wantCode(t, err, codes.Unauthenticated)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 1 {
		t.Errorf("nodes = %v, want only the one the good token registered", nodes.GetNodes())
	}
}

// TestSingleUseTokenRegistersOnce: 20 agents racing with one single-use
// token make one node.
func TestSingleUseTokenRegistersOnce(t *testing.T) {
	h := start(t, "")
	tok, err := h.c.MintToken("race", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 20 {
		wg.Go(func() {
			if _, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1}); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("%d registrations succeeded with one single-use token, want 1", ok)
	}
}

func TestSessionStartsWithNodeIDAndPeriod(t *testing.T) {
	h := start(t, "")
	a := newAgent(t, h, 2)
	a.open()
	if got := a.started.GetNodeId(); got != a.id {
		t.Errorf("started node id = %q, want %q", got, a.id)
	}
	if got := a.started.GetHeartbeatPeriod().AsDuration(); got != h.cfg.HeartbeatPeriod {
		t.Errorf("heartbeat period = %v, want %v", got, h.cfg.HeartbeatPeriod)
	}
	// A second session replaces the first.
	first, stopFirst := a.ended, a.stopSession
	defer stopFirst()
	a.open()
	select {
	case <-first:
	case <-ctxT(t).Done():
		t.Fatal("the old session did not end when a new one opened")
	}
}

// TestCAAndAdminCredentialKept: the CA key and the admin credential are
// 0600, made once and kept across restarts; a removed credential file is
// written again for the same CA.
func TestCAAndAdminCredentialKept(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	fp := h.c.CAFingerprint()
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, PKIDirName, pki.CAKeyFile): 0o600,
		filepath.Join(dir, PKIDirName, serverKeyFile): 0o600,
		h.cfg.AdminConfig: 0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	before, _ := os.ReadFile(h.cfg.AdminConfig)
	h.stop()
	h2 := start(t, dir)
	after, _ := os.ReadFile(h2.cfg.AdminConfig)
	if h2.c.CAFingerprint() != fp || string(before) != string(after) {
		t.Errorf("a restart changed the CA or rewrote a valid admin credential")
	}
	h2.stop()
	os.Remove(h2.cfg.AdminConfig)
	h3 := start(t, dir)
	if _, err := h3.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{}); err != nil {
		t.Fatalf("with the rewritten admin credential: %v", err)
	}
}

// TestServerCertificateFollowsAddresses: the server certificate names the
// listen and advertise hosts and is issued again when they change.
func TestServerCertificateFollowsAddresses(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{StateDir: dir, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.trust.ensureServerCert(listenHosts("0.0.0.0:7443", "coord.example.com:7443")); err != nil {
		t.Fatal(err)
	}
	leaf := func() []string {
		pair := c.trust.server.Load()
		cert, err := pki.ParseCert(pemOf(pair.Certificate[0]))
		if err != nil {
			t.Fatal(err)
		}
		return certHosts(cert)
	}
	got := strings.Join(leaf(), " ")
	for _, want := range []string{"coord.example.com", "127.0.0.1", "localhost"} {
		if !strings.Contains(got, want) {
			t.Errorf("server certificate names %q, want %q among them", got, want)
		}
	}
	if err := c.trust.ensureServerCert(listenHosts("10.0.0.5:7443")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(leaf(), " "); got != "10.0.0.5" {
		t.Errorf("after a new address the certificate names %q, want 10.0.0.5", got)
	}
}

func TestSecondCoordinatorOnLockedStateFailsFast(t *testing.T) {
	h := start(t, "")
	cfg := h.cfg
	_, err := New(cfg)
	if err == nil {
		t.Fatal("a second coordinator opened a locked state")
	}
	if !strings.Contains(err.Error(), "state is locked by another coordinator") {
		t.Errorf("error %q does not say the state is locked", err)
	}
}

// TestConcurrentRegistrationsAllKept: registrations wait for the disk
// outside registerMu, sharing group commits; every one a token allows
// still gets its own node, counted on the token, and all are on disk.
func TestConcurrentRegistrationsAllKept(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	const n = 24
	tok, _, err := h.c.createToken(tokenRequest{ttl: time.Hour, uses: n, label: "many"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make(chan string, n)
	for range n {
		wg.Go(func() {
			id, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok.String(), Slots: 1})
			if err != nil {
				t.Errorf("register: %v", err)
				return
			}
			ids <- id
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("node id %s given twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct nodes registered, want %d", len(seen), n)
	}
	if _, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok.String(), Slots: 1}); err == nil {
		t.Errorf("registration %d with a token of %d uses succeeded", n+1, n)
	}
	h.stop()

	h2 := start(t, dir)
	h2.c.mu.Lock()
	defer h2.c.mu.Unlock()
	for id := range seen {
		if h2.c.nodes[id] == nil {
			t.Errorf("node %s acknowledged but not on disk", id)
		}
	}
	if got := len(h2.c.trust.tokens[tok.ID].Nodes); got != n {
		t.Errorf("token lists %d nodes after restart, want %d", got, n)
	}
}

// singleUseRegistration starts a coordinator and returns a single-use
// token, a CSR and an agent client on a connection without a certificate.
func singleUseRegistration(t *testing.T) (*harness, string, []byte, cloudmlv1.AgentServiceClient) {
	t.Helper()
	h := start(t, "")
	tok, err := h.c.MintToken("once", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := pki.NewKeyRequest()
	if err != nil {
		t.Fatal(err)
	}
	conn := h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), nil)))
	t.Cleanup(func() { conn.Close() })
	return h, tok, csr, cloudmlv1.NewAgentServiceClient(conn)
}

// TestRegisterRepeatedAfterALostAnswer: an agent whose Register answer was
// lost sends the same request again, and its single-use token is used by
// then. The same token and key get the same node, with a new certificate;
// another key, or the same key once the token is revoked, gets nothing.
func TestRegisterRepeatedAfterALostAnswer(t *testing.T) {
	h, tok, csr, client := singleUseRegistration(t)
	register := func(csr []byte) (*cloudmlv1.RegisterResponse, error) {
		return client.Register(ctxT(t), &cloudmlv1.RegisterRequest{JoinToken: tok, Csr: csr, Slots: 1})
	}
	first, err := register(csr)
	if err != nil {
		t.Fatal(err)
	}
	again, err := register(csr) // the first answer never arrived
	if err != nil {
		t.Fatalf("the repeated Register was refused: %v", err)
	}
	if again.GetNodeId() != first.GetNodeId() || bytes.Equal(again.GetCertificate(), first.GetCertificate()) {
		t.Errorf("repeated Register gave node %s (first %s), same certificate %v; want the same node with a new certificate",
			again.GetNodeId(), first.GetNodeId(), bytes.Equal(again.GetCertificate(), first.GetCertificate()))
	}
	h.c.mu.Lock()
	nodes := len(h.c.nodes)
	h.c.mu.Unlock()
	if nodes != 1 {
		t.Errorf("%d nodes after a repeated Register, want 1", nodes)
	}
	_, other, err := pki.NewKeyRequest()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register(other); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another key with the used token: %v, want Unauthenticated", err)
	}
	id, err := pki.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.cluster.RevokeJoinToken(ctxT(t), &cloudmlv1.RevokeJoinTokenRequest{Id: id.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := register(csr); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the same key after the token was revoked: %v, want Unauthenticated", err)
	}
}

// TestRegisterRepeatedWhileTheFirstRuns: a repeat sent before the first
// call answered (the agent's call timed out) waits for it and gets its node.
func TestRegisterRepeatedWhileTheFirstRuns(t *testing.T) {
	h, tok, csr, client := singleUseRegistration(t)
	const n = 8
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := client.Register(ctxT(t), &cloudmlv1.RegisterRequest{JoinToken: tok, Csr: csr, Slots: 1})
			if err != nil {
				t.Errorf("an identical Register: %v", err)
				return
			}
			ids <- resp.GetNodeId()
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	h.c.mu.Lock()
	nodes := len(h.c.nodes)
	h.c.mu.Unlock()
	if len(seen) != 1 || nodes != 1 {
		t.Errorf("%d identical Registers gave nodes %v and made %d; want one node", n, seen, nodes)
	}
}
