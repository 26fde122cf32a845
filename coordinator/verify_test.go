package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// verifier is a VerifyNode hook that accepts the droplet ids it knows and
// records every claim it is asked about.
type verifier struct {
	mu     sync.Mutex
	known  map[string]bool
	down   bool // answer ErrVerifyUnavailable
	claims []NodeClaim
}

func (v *verifier) verify(_ context.Context, c NodeClaim) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.claims = append(v.claims, c)
	switch {
	case v.down:
		return fmt.Errorf("%w: the API answered 503", ErrVerifyUnavailable)
	case !v.known[c.ProviderID]:
		return fmt.Errorf("droplet %q is not one of this cluster's", c.ProviderID)
	}
	return nil
}

func (v *verifier) asked() []NodeClaim {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]NodeClaim(nil), v.claims...)
}

func tokenRecord(t *testing.T, h *harness, raw string) (used int32, nodes []string) {
	t.Helper()
	tok, err := pki.ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	h.c.trust.mu.RLock()
	defer h.c.trust.mu.RUnlock()
	rec := h.c.trust.tokens[tok.ID]
	return rec.Used, rec.Nodes
}

func nodeCount(t *testing.T, h *harness) int {
	t.Helper()
	resp, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetNodes())
}

// TestVerifyNodeRefusalCreatesNothing: a machine the hook refuses gets
// UNAUTHENTICATED with the hook's reason, no node is made, and its token
// stays unused, so the right machine can still register with it.
func TestVerifyNodeRefusalCreatesNothing(t *testing.T) {
	v := &verifier{known: map[string]bool{"3164494": true}}
	h := start(t, "", func(c *Config) { c.VerifyNode = v.verify })
	tok, err := h.c.MintToken("droplet ml-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: "999", Hostname: "impostor"})
	wantCode(t, err, codes.Unauthenticated)
	if !strings.Contains(err.Error(), `droplet "999" is not one of this cluster's`) {
		t.Errorf("refusal %q does not give the hook's reason", err)
	}
	if n := nodeCount(t, h); n != 0 {
		t.Errorf("nodes after a refusal = %d, want 0", n)
	}
	if used, nodes := tokenRecord(t, h, tok); used != 0 || len(nodes) != 0 {
		t.Errorf("token after a refusal: used %d by %v, want unused", used, nodes)
	}

	id, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: "3164494", Hostname: "ml-1", Address: "10.116.0.2"})
	if err != nil {
		t.Fatalf("register as the right droplet with the same token: %v", err)
	}
	if used, nodes := tokenRecord(t, h, tok); used != 1 || len(nodes) != 1 || nodes[0] != id {
		t.Errorf("token after the registration: used %d by %v, want once by %s", used, nodes, id)
	}
	h.c.mu.Lock()
	got := h.c.nodes[id].rec.ProviderID
	h.c.mu.Unlock()
	if got != "3164494" {
		t.Errorf("node %s provider id = %q, want the droplet id", id, got)
	}
	claims := v.asked()
	tid, _ := pki.ParseToken(tok)
	last := claims[len(claims)-1]
	if len(claims) != 2 || last.ProviderID != "3164494" || last.Hostname != "ml-1" || last.Address != "10.116.0.2" ||
		last.TokenID != tid.ID || last.TokenLabel != "droplet ml-1" || last.PeerAddr == "" {
		t.Errorf("claims the hook saw = %+v, want two, the last naming the droplet, its token and its connection", claims)
	}

	// The provider id is kept across a restart.
	h.stop()
	h2 := start(t, h.stateDir)
	h2.c.mu.Lock()
	got = h2.c.nodes[id].rec.ProviderID
	h2.c.mu.Unlock()
	if got != "3164494" {
		t.Errorf("after a restart node %s provider id = %q, want the droplet id", id, got)
	}
}

// TestVerifyNodeUnavailableIsRetryable: a hook that cannot decide makes
// the registration UNAVAILABLE (the agent retries), with nothing used up.
func TestVerifyNodeUnavailableIsRetryable(t *testing.T) {
	v := &verifier{known: map[string]bool{"1": true}, down: true}
	h := start(t, "", func(c *Config) { c.VerifyNode = v.verify })
	tok, err := h.c.MintToken("droplet", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: "1"})
	wantCode(t, err, codes.Unavailable)
	if used, _ := tokenRecord(t, h, tok); used != 0 || nodeCount(t, h) != 0 {
		t.Errorf("after an unavailable check: token used %d, %d nodes; want nothing used", used, nodeCount(t, h))
	}
	v.mu.Lock()
	v.down = false
	v.mu.Unlock()
	if _, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: "1"}); err != nil {
		t.Errorf("retry once the check is back: %v", err)
	}
}

// TestVerifyNodeOnlyForValidTokens: a caller without a valid token never
// makes the coordinator ask its provider.
func TestVerifyNodeOnlyForValidTokens(t *testing.T) {
	v := &verifier{known: map[string]bool{"1": true}}
	h := start(t, "", func(c *Config) { c.VerifyNode = v.verify })
	bad := pki.NewToken(h.c.CAFingerprint()).String() // never stored
	_, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: bad, Slots: 1, ProviderId: "1"})
	wantCode(t, err, codes.Unauthenticated)
	if n := len(v.asked()); n != 0 {
		t.Errorf("the hook was asked %d times for an invalid token, want 0", n)
	}
	tok, _ := h.c.MintToken("x", 0, 0)
	_, _, err = registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: strings.Repeat("9", maxProviderID+1)})
	wantCode(t, err, codes.InvalidArgument)
}

// TestVerifyNodeSingleUseTokenRace: 20 machines the hook accepts, racing
// with one single-use token, make one node: the token is checked again
// after the hook, under the registration lock.
func TestVerifyNodeSingleUseTokenRace(t *testing.T) {
	v := &verifier{known: map[string]bool{"1": true}}
	h := start(t, "", func(c *Config) { c.VerifyNode = v.verify })
	tok, err := h.c.MintToken("race", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok int
	for range 20 {
		wg.Go(func() {
			if _, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: tok, Slots: 1, ProviderId: "1"}); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 || nodeCount(t, h) != 1 {
		t.Errorf("%d registrations succeeded and %d nodes exist with one single-use token, want 1 and 1", ok, nodeCount(t, h))
	}
}
