package digitalocean

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

// clusterFirewalls returns the server's firewalls named for cluster "ml".
func clusterFirewalls(s *dofake.Server) []dofake.Firewall {
	var out []dofake.Firewall
	for _, fw := range s.Firewalls() {
		if fw.Name == FirewallName("ml") {
			out = append(out, fw)
		}
	}
	return out
}

// TestFirewallMadeOnce: three creates and a restart of the provider (a new
// one, against the same account) make one firewall, found by name after
// the first, before the first droplet.
func TestFirewallMadeOnce(t *testing.T) {
	h := start(t, nil, nil)
	for _, r := range []string{"a", "b", "c"} {
		if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: r, Count: 1}); err != nil {
			t.Fatalf("Create %s: %v", r, err)
		}
	}
	h.p.Close()
	p := newProvider(t, testConfig(h.s))
	tg, _ := target(t, nil)
	if err := p.Start(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), provider.CreateRequest{Request: "d", Count: 2}); err != nil {
		t.Fatalf("Create after a restart: %v", err)
	}
	st := h.s.Stats()
	fws := clusterFirewalls(h.s)
	t.Logf("4 creates (5 droplets) across a restart: firewalls %d, firewall creates %d, updates %d, lists %d",
		len(fws), st.Requests[dofake.EndpointFirewallsCreate], st.Requests[dofake.EndpointFirewallsUpdate], st.Requests[dofake.EndpointFirewallsList])
	if len(fws) != 1 || st.Requests[dofake.EndpointFirewallsCreate] != 1 || st.Requests[dofake.EndpointFirewallsUpdate] != 0 {
		t.Errorf("%d firewalls, %d creates, %d updates; want 1, 1, 0", len(fws), st.Requests[dofake.EndpointFirewallsCreate], st.Requests[dofake.EndpointFirewallsUpdate])
	}
	if st.Created != 5 {
		t.Errorf("%d droplets created, want 5", st.Created)
	}
}

// TestFirewallRules: the firewall applies to the cluster's tag; inbound it
// admits traffic from that tag alone, plus 22/tcp from anywhere only when
// SSH keys are named; outbound everything goes.
func TestFirewallRules(t *testing.T) {
	tag := ClusterTag("ml")
	fromTag := &dofake.FirewallTarget{Tags: []string{tag}}
	anyAddr := &dofake.FirewallTarget{Addresses: []string{"0.0.0.0/0", "::/0"}}
	clusterOnly := []dofake.FirewallRule{
		{Protocol: "tcp", Ports: "0", Sources: fromTag, Action: "allow"},
		{Protocol: "udp", Ports: "0", Sources: fromTag, Action: "allow"},
		{Protocol: "icmp", Ports: "0", Sources: fromTag, Action: "allow"},
	}
	key := dofake.SSHKey{ID: 4242, Fingerprint: "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", Name: "me"}
	for _, c := range []struct {
		name string
		keys []string
		want []dofake.FirewallRule
	}{
		{"no ssh keys", nil, clusterOnly},
		{"ssh keys", []string{"4242"}, append(slices.Clone(clusterOnly), dofake.FirewallRule{Protocol: "tcp", Ports: "22", Sources: anyAddr, Action: "allow"})},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, func(s *dofake.Config) { s.SSHKeys = []dofake.SSHKey{key} }, func(cfg *Config) { cfg.SSHKeys = c.keys })
			if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 1}); err != nil {
				t.Fatal(err)
			}
			fws := clusterFirewalls(h.s)
			if len(fws) != 1 {
				t.Fatalf("%d firewalls, want 1", len(fws))
			}
			fw := fws[0]
			if diff := cmp.Diff(c.want, fw.InboundRules); diff != "" {
				t.Errorf("inbound rules (-want +got):\n%s", diff)
			}
			for _, r := range fw.InboundRules {
				if len(r.Sources.Addresses) > 0 && r.Ports != "22" {
					t.Errorf("inbound rule %+v admits addresses", r)
				}
			}
			wantOut := []dofake.FirewallRule{
				{Protocol: "tcp", Ports: "0", Destinations: anyAddr, Action: "allow"},
				{Protocol: "udp", Ports: "0", Destinations: anyAddr, Action: "allow"},
				{Protocol: "icmp", Ports: "0", Destinations: anyAddr, Action: "allow"},
			}
			if diff := cmp.Diff(wantOut, fw.OutboundRules); diff != "" {
				t.Errorf("outbound rules (-want +got):\n%s", diff)
			}
			if !slices.Equal(fw.Tags, []string{tag}) || len(fw.DropletIDs) != 0 {
				t.Errorf("firewall applied to tags %q, droplets %v; want the cluster's tag alone", fw.Tags, fw.DropletIDs)
			}
		})
	}
}

// TestFirewallPutBack: a firewall of the cluster's name found with a rule
// added by hand (2377 open to the world) and not applied to the cluster's
// tag is put back to the provider's rules, applied to the tag, keeping its
// other tag; no second firewall is made.
func TestFirewallPutBack(t *testing.T) {
	h := start(t, nil, nil)
	ctx := t.Context()
	for _, tag := range []string{"web", ClusterTag("ml")} {
		if _, _, err := h.p.api.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil {
			t.Fatal(err)
		}
	}
	opened := h.p.firewallRequest()
	opened.InboundRules = append(opened.InboundRules, godo.InboundRule{Protocol: "tcp", PortRange: "2377", Sources: &godo.Sources{Addresses: []string{"0.0.0.0/0"}}})
	opened.Tags = []string{"web"}
	if _, _, err := h.p.api.Firewalls.Create(ctx, opened); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Create(ctx, provider.CreateRequest{Request: "r", Count: 1}); err != nil {
		t.Fatal(err)
	}
	fws := clusterFirewalls(h.s)
	if len(fws) != 1 {
		t.Fatalf("%d firewalls, want the one found", len(fws))
	}
	for _, r := range fws[0].InboundRules {
		if r.Ports == "2377" {
			t.Errorf("the rule added by hand is still there: %+v", r)
		}
	}
	if len(fws[0].InboundRules) != 3 || !slices.Equal(fws[0].Tags, []string{"web", ClusterTag("ml")}) {
		t.Errorf("firewall after the create: %d inbound rules, tags %q; want 3, [web cloudml-cluster:ml]", len(fws[0].InboundRules), fws[0].Tags)
	}
	if n := h.s.Stats().Requests[dofake.EndpointFirewallsUpdate]; n != 1 {
		t.Errorf("%d firewall updates, want 1", n)
	}
}

// TestDryRunShowsFirewall: the dry run names the firewall, new before the
// first create and existing after, with ssh 22 when keys are named, and
// says so when it is off; with it off, a create makes none.
func TestDryRunShowsFirewall(t *testing.T) {
	key := dofake.SSHKey{ID: 4242, Fingerprint: "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", Name: "me"}
	h := start(t, func(c *dofake.Config) { c.SSHKeys = []dofake.SSHKey{key} }, func(c *Config) { c.SSHKeys = []string{"4242"} })
	note := func(p *Provider) string {
		t.Helper()
		plan, err := p.PlanCreate(t.Context(), provider.CreateRequest{Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range plan.Notes {
			if strings.HasPrefix(n, "firewall: ") {
				return n
			}
		}
		t.Fatalf("no firewall note in %q", plan.Notes)
		return ""
	}
	if got, want := note(h.p), "firewall: cloudml-ml (new): inbound only from the cluster's droplets, ssh 22"; got != want {
		t.Errorf("before any create: %q, want %q", got, want)
	}
	if n := len(h.s.Firewalls()); n != 0 {
		t.Fatalf("the dry run made %d firewalls", n)
	}
	if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := note(h.p), "firewall: cloudml-ml (existing): inbound only from the cluster's droplets, ssh 22"; got != want {
		t.Errorf("after a create: %q, want %q", got, want)
	}

	off := start(t, nil, func(c *Config) { c.Firewall = false })
	if got := note(off.p); !strings.HasPrefix(got, "firewall: none (--do-firewall=false)") {
		t.Errorf("with the firewall off: %q", got)
	}
	if _, err := off.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 2}); err != nil {
		t.Fatal(err)
	}
	st := off.s.Stats()
	if len(off.s.Firewalls()) != 0 || st.Requests[dofake.EndpointFirewallsCreate] != 0 || st.Requests[dofake.EndpointFirewallsList] != 0 || st.Created != 2 {
		t.Errorf("with the firewall off: %d firewalls, %d creates, %d lists, %d droplets; want 0, 0, 0, 2",
			len(off.s.Firewalls()), st.Requests[dofake.EndpointFirewallsCreate], st.Requests[dofake.EndpointFirewallsList], st.Created)
	}
}

// TestFirewallCreateRetried: a firewall create answered 503, then 429
// (Retry-After 0), then 500 after it took effect, is retried after a list
// by name each time, and ends with one firewall and the droplets made.
func TestFirewallCreateRetried(t *testing.T) {
	h := start(t, nil, nil)
	var injected []*dofake.Injection
	for _, f := range []dofake.Fault{
		{Status: http.StatusServiceUnavailable, Times: 1},
		{Status: http.StatusTooManyRequests, Times: 1},
		{Status: http.StatusInternalServerError, AfterEffect: true, Times: 1},
	} {
		injected = append(injected, h.s.Inject(dofake.EndpointFirewallsCreate, f))
	}
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 2})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	fired := 0
	for _, in := range injected {
		fired += in.Fired()
	}
	st := h.s.Stats()
	t.Logf("firewall creates answered 503, 429, lost 500: faults fired %d, create requests %d, firewalls %d, droplets %d",
		fired, st.Requests[dofake.EndpointFirewallsCreate], len(clusterFirewalls(h.s)), st.Created)
	if fired != 3 || st.Requests[dofake.EndpointFirewallsCreate] != 3 || len(clusterFirewalls(h.s)) != 1 || len(nodes) != 2 {
		t.Errorf("%d faults fired, %d creates sent, %d firewalls, %d nodes; want 3, 3, 1, 2",
			fired, st.Requests[dofake.EndpointFirewallsCreate], len(clusterFirewalls(h.s)), len(nodes))
	}
}

// TestFirewallFailureMakesNoDroplet: a firewall that cannot be made (5xx
// past the retries, or a 403 of a token without firewall scopes) fails the
// create with an error naming it, before any droplet is asked for; a
// create after the API recovers makes both.
func TestFirewallFailureMakesNoDroplet(t *testing.T) {
	for _, c := range []struct {
		name      string
		fault     dofake.Fault
		wantSends int
	}{
		{"500 every time", dofake.Fault{Status: http.StatusInternalServerError}, 5}, // Retry.Max 4
		{"403", dofake.Fault{Status: http.StatusForbidden, Message: "You are not authorized to perform this operation"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, nil, nil)
			h.s.Inject(dofake.EndpointFirewallsCreate, c.fault)
			nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 3})
			st := h.s.Stats()
			t.Logf("%s: create error %q; firewall creates sent %d, droplet creates sent %d, droplets %d", c.name, err, st.Requests[dofake.EndpointFirewallsCreate],
				st.Requests[dofake.EndpointDropletsCreate], st.Created)
			if err == nil || !strings.Contains(err.Error(), "no droplet created: the cluster's firewall cloudml-ml") || len(nodes) != 0 {
				t.Fatalf("Create = %d nodes, %v; want none and the firewall's error", len(nodes), err)
			}
			if st.Requests[dofake.EndpointDropletsCreate] != 0 || st.Created != 0 || len(h.m.Labels()) != 0 {
				t.Errorf("%d droplet creates sent, %d droplets, %d tokens minted: want none", st.Requests[dofake.EndpointDropletsCreate], st.Created, len(h.m.Labels()))
			}
			if c.fault.Status == http.StatusForbidden && !strings.Contains(err.Error(), "firewall:create, firewall:read and firewall:update") {
				t.Errorf("a 403 does not name the scopes: %v", err)
			}
			if got := st.Requests[dofake.EndpointFirewallsCreate]; got != c.wantSends {
				t.Errorf("%d firewall creates sent, want %d", got, c.wantSends)
			}
			h.s.ClearFaults()
			if nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r2", Count: 1}); err != nil || len(nodes) != 1 || len(clusterFirewalls(h.s)) != 1 {
				t.Errorf("Create once the API recovered = %d nodes, %v, %d firewalls; want 1, nil, 1", len(nodes), err, len(clusterFirewalls(h.s)))
			}
		})
	}
}

// TestPrepareGivesVPCRange: Prepare, before Start, makes the cluster's VPC
// and returns its ip_range as the swarm peers; the first create reuses it.
// With a VPC given, its range.
func TestPrepareGivesVPCRange(t *testing.T) {
	s := server(t, nil)
	vpcs := len(s.VPCs())
	p := newProvider(t, testConfig(s))
	prep, err := p.Prepare(t.Context())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if len(s.VPCs()) != vpcs+1 {
		t.Fatalf("%d VPCs after Prepare, want the cluster's made", len(s.VPCs()))
	}
	var v *godo.VPC
	if v, _, err = p.api.VPCs.Get(t.Context(), s.VPCs()[vpcs]); err != nil {
		t.Fatal(err)
	}
	t.Logf("Prepare: VPC %s %s, swarm peers %q", v.Name, v.IPRange, prep.PeerCIDRs)
	if !slices.Equal(prep.PeerCIDRs, []string{v.IPRange}) || prep.NodeListen != "" || v.Name != "cloudml-ml-fra1" {
		t.Errorf("Prepare = %+v; want the peers %s of VPC cloudml-ml-fra1 and no node listener", prep, v.IPRange)
	}
	if _, err := netip.ParsePrefix(prep.PeerCIDRs[0]); err != nil {
		t.Errorf("peer %q: %v", prep.PeerCIDRs[0], err)
	}
	tg, _ := target(t, nil)
	if err := p.Start(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if len(s.VPCs()) != vpcs+1 || s.Stats().Requests[dofake.EndpointVPCsCreate] != 1 {
		t.Errorf("%d VPCs, %d VPC creates after a create; want the one Prepare made", len(s.VPCs()), s.Stats().Requests[dofake.EndpointVPCsCreate])
	}

	given, _, err := p.api.VPCs.Create(context.Background(), &godo.VPCCreateRequest{Name: "mine", RegionSlug: "fra1", IPRange: "10.210.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s)
	cfg.VPC = given.ID
	prep, err = newProvider(t, cfg).Prepare(t.Context())
	if err != nil || !slices.Equal(prep.PeerCIDRs, []string{"10.210.0.0/24"}) {
		t.Errorf("Prepare with --do-vpc = %+v, %v; want its range 10.210.0.0/24", prep, err)
	}
	cfg.Region = "nowhere1"
	if _, err := newProvider(t, cfg).Prepare(t.Context()); err == nil {
		t.Errorf("Prepare in an unknown region: no error")
	}
}
