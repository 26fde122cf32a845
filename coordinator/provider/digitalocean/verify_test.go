package digitalocean

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

// TestVerifyNode: the droplet a token was minted for, connecting from its
// public or private address, is accepted; a wrong id, a droplet of
// another cluster, another address, and another droplet's token (of the
// same request or another) are refused; an API failure or a droplet with
// no address yet is "unavailable", which the agent retries.
func TestVerifyNode(t *testing.T) {
	h := start(t, nil, nil)
	ctx := t.Context()
	create := func(p *Provider, req string, n int) []provider.Node {
		t.Helper()
		nodes, err := p.Create(ctx, provider.CreateRequest{Request: req, Count: n})
		if err != nil {
			t.Fatal(err)
		}
		return nodes
	}
	other := newProvider(t, func() Config { c := testConfig(h.s); c.Cluster = "other"; return c }())
	otherTarget, _ := target(t, nil)
	if err := other.Start(ctx, otherTarget); err != nil {
		t.Fatal(err)
	}
	r1 := create(h.p, "r1", 2)
	r2 := create(h.p, "r2", 1)
	foreign := create(other, "r1", 1)[0]

	type droplet struct {
		id, label string
		pub, priv string
	}
	get := func(n provider.Node, cluster string) droplet {
		id, _ := strconv.Atoi(n.ID)
		d := waitActive(t, h.s, id)
		return droplet{n.ID, TokenLabel(cluster, n.Request, n.Name), d.PublicIPv4.String() + ":40000", d.PrivateIPv4.String() + ":40001"}
	}
	a, b, c, f := get(r1[0], "ml"), get(r1[1], "ml"), get(r2[0], "ml"), get(foreign, "other")
	claim := func(id, peer, label string) coordinator.NodeClaim {
		return coordinator.NodeClaim{ProviderID: id, PeerAddr: peer, TokenID: "0123456789ab", TokenLabel: label, Hostname: "h"}
	}
	for _, tc := range []struct {
		name  string
		claim coordinator.NodeClaim
		want  string // "" accepted, else in the refusal
	}{
		{"its public address", claim(a.id, a.pub, a.label), ""},
		{"its private address", claim(b.id, b.priv, b.label), ""},
		{"an IPv4-mapped peer", claim(a.id, "[::ffff:"+strings.TrimSuffix(a.pub, ":40000")+"]:1", a.label), ""},
		{"no droplet id", claim("", a.pub, a.label), "no droplet id"},
		{"a droplet that does not exist", claim("999999", a.pub, a.label), "droplet 999999 does not exist"},
		{"another cluster's droplet", claim(f.id, f.pub, a.label), "is not tagged cloudml-cluster:ml"},
		{"a token of another cluster", claim(f.id, f.pub, f.label), "not minted for a droplet of cluster ml"},
		{"a token not a droplet's", claim(a.id, a.pub, "local node-1"), "not minted for a droplet of cluster ml"},
		{"another droplet's address", claim(a.id, b.pub, a.label), "but the connection comes from"},
		{"the token of another droplet of its request", claim(b.id, b.pub, a.label), "is not the droplet its join token"},
		{"the token of a droplet of another request", claim(c.id, c.pub, a.label), "is not the droplet its join token"},
	} {
		err := h.p.VerifyNode(ctx, tc.claim)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: VerifyNode = %v, want accepted", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: VerifyNode = %v, want refused: %q", tc.name, err, tc.want)
		case tc.want != "" && errors.Is(err, coordinator.ErrVerifyUnavailable):
			t.Errorf("%s: VerifyNode = %v, a refusal the agent would retry", tc.name, err)
		}
	}

	h.s.Inject(dofake.EndpointDropletsGet, dofake.Fault{Status: http.StatusInternalServerError})
	if err := h.p.VerifyNode(ctx, claim(a.id, a.pub, a.label)); !errors.Is(err, coordinator.ErrVerifyUnavailable) || errors.Is(err, ErrRefused) {
		t.Errorf("VerifyNode while the API fails = %v, want ErrVerifyUnavailable", err)
	}
	h.s.ClearFaults()
}

// TestVerifyNodeOfADropletWithoutAddress: a droplet still "new" has no
// address to compare: the agent is told to retry, not refused.
func TestVerifyNodeOfADropletWithoutAddress(t *testing.T) {
	h := start(t, func(c *dofake.Config) { c.ActiveDelay = time.Hour }, nil)
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "new", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	err = h.p.VerifyNode(t.Context(), coordinator.NodeClaim{ProviderID: n.ID, PeerAddr: "198.18.0.9:4000", TokenLabel: TokenLabel("ml", "new", n.Name)})
	if !errors.Is(err, coordinator.ErrVerifyUnavailable) || !strings.Contains(err.Error(), "no address yet") {
		t.Errorf("VerifyNode of a new droplet = %v, want ErrVerifyUnavailable", err)
	}
}

func TestTokenLabelRoundTrip(t *testing.T) {
	label := TokenLabel("ml", "0123abcd", "ml-default-0123abcd-1")
	if c, r, n, ok := parseLabel(label); !ok || c != "ml" || r != "0123abcd" || n != "ml-default-0123abcd-1" {
		t.Errorf("parseLabel(%q) = %s %s %s %v", label, c, r, n, ok)
	}
	for _, bad := range []string{"", "local node-1", "digitalocean cluster=ml request= droplet=x", "digitalocean cluster=ml request=r"} {
		if _, _, _, ok := parseLabel(bad); ok {
			t.Errorf("parseLabel(%q) ok", bad)
		}
	}
}
