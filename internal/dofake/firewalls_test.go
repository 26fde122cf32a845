package dofake_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/dofake"
)

// clusterFirewall is a firewall request like the provider's: inbound from
// the tag only, outbound anywhere, applied to the tag.
func clusterFirewall(name, tag string) *godo.FirewallRequest {
	from := &godo.Sources{Tags: []string{tag}}
	to := &godo.Destinations{Addresses: []string{"0.0.0.0/0", "::/0"}}
	return &godo.FirewallRequest{
		Name: name,
		InboundRules: []godo.InboundRule{
			{Protocol: "tcp", PortRange: "all", Sources: from},
			{Protocol: "UDP", PortRange: "all", Sources: from},
			{Protocol: "icmp", Sources: from},
		},
		OutboundRules: []godo.OutboundRule{
			{Protocol: "tcp", PortRange: "all", Destinations: to},
			{Protocol: "udp", PortRange: "1-65535", Destinations: to},
			{Protocol: "icmp", Destinations: to},
		},
		Tags: []string{tag},
	}
}

// TestFirewalls: a firewall naming a tag that does not exist is refused;
// once the tag exists it is created (202) with its rules stored as the API
// stores them, listed, got, replaced whole by a PUT, and deleted (204,
// then 404).
func TestFirewalls(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	tag := "cloudml-cluster:ml"
	req := clusterFirewall("cloudml-ml", tag)
	var er *godo.ErrorResponse
	if _, _, err := c.Firewalls.Create(ctx, req); !asError(err, &er) || er.Response.StatusCode != 422 || !strings.Contains(er.Message, "tag "+tag+" does not exist") {
		t.Fatalf("create naming a missing tag = %v, want 422 tag does not exist", err)
	}
	if _, _, err := c.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil {
		t.Fatal(err)
	}
	fw, resp, err := c.Firewalls.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted || fw.ID == "" || fw.Name != "cloudml-ml" || fw.Status != "succeeded" {
		t.Fatalf("create: %d %+v", resp.StatusCode, fw)
	}
	from := &godo.Sources{Tags: []string{tag}}
	wantIn := []godo.InboundRule{
		{Protocol: "tcp", PortRange: "0", Sources: from, Action: "allow"},
		{Protocol: "udp", PortRange: "0", Sources: from, Action: "allow"},
		{Protocol: "icmp", PortRange: "0", Sources: from, Action: "allow"},
	}
	if diff := cmp.Diff(wantIn, fw.InboundRules); diff != "" {
		t.Errorf("stored inbound rules (-want +got):\n%s", diff)
	}
	if got := fw.OutboundRules[1].PortRange; got != "1-65535" {
		t.Errorf("outbound udp ports stored as %q, want 1-65535 as given", got)
	}
	list, _, err := c.Firewalls.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || len(list) != 1 || list[0].ID != fw.ID || !cmp.Equal(list[0].Tags, []string{tag}) {
		t.Fatalf("list = %+v, %v; want the firewall", list, err)
	}
	req.InboundRules = req.InboundRules[:1]
	req.Tags = nil // a PUT replaces the whole firewall
	up, resp, err := c.Firewalls.Update(ctx, fw.ID, req)
	if err != nil || resp.StatusCode != http.StatusOK || len(up.InboundRules) != 1 || len(up.Tags) != 0 {
		t.Fatalf("update = %d %+v, %v; want 200, one inbound rule, no tags", resp.StatusCode, up, err)
	}
	got, _, err := c.Firewalls.Get(ctx, fw.ID)
	if err != nil || len(got.InboundRules) != 1 {
		t.Fatalf("get after update = %+v, %v", got, err)
	}
	if resp, err := c.Firewalls.Delete(ctx, fw.ID); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete = %v", err)
	}
	if _, _, err := c.Firewalls.Get(ctx, fw.ID); !asError(err, &er) || er.Response.StatusCode != 404 {
		t.Errorf("get after delete = %v, want 404", err)
	}
	if _, err := c.Firewalls.Delete(ctx, fw.ID); !asError(err, &er) || er.Response.StatusCode != 404 {
		t.Errorf("second delete = %v, want 404", err)
	}
	if n := len(s.Firewalls()); n != 0 {
		t.Errorf("%d firewalls left", n)
	}
}

// TestFirewallRefusals: each request the API refuses is 422 and makes
// nothing; names need not be unique.
func TestFirewallRefusals(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	tag := "cloudml-cluster:ml"
	if _, _, err := c.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*godo.FirewallRequest){
		"name with a colon":      func(r *godo.FirewallRequest) { r.Name = "cloudml:ml" },
		"name with a dash first": func(r *godo.FirewallRequest) { r.Name = "-ml" },
		"no rules":               func(r *godo.FirewallRequest) { r.InboundRules, r.OutboundRules = nil, nil },
		"bad ports":              func(r *godo.FirewallRequest) { r.InboundRules[0].PortRange = "0-70000" },
		"no ports":               func(r *godo.FirewallRequest) { r.InboundRules[0].PortRange = "" },
		"bad protocol":           func(r *godo.FirewallRequest) { r.InboundRules[0].Protocol = "sctp" },
		"bad address": func(r *godo.FirewallRequest) {
			r.OutboundRules[0].Destinations = &godo.Destinations{Addresses: []string{"nowhere"}}
		},
		"no sources":         func(r *godo.FirewallRequest) { r.InboundRules[0].Sources = nil },
		"missing droplet":    func(r *godo.FirewallRequest) { r.DropletIDs = []int{7} },
		"six tags":           func(r *godo.FirewallRequest) { r.Tags = []string{tag, tag, tag, tag, tag, tag} },
		"missing source tag": func(r *godo.FirewallRequest) { r.InboundRules[0].Sources = &godo.Sources{Tags: []string{"nope"}} },
	} {
		req := clusterFirewall("cloudml-ml", tag)
		mod(req)
		var er *godo.ErrorResponse
		if _, _, err := c.Firewalls.Create(ctx, req); !asError(err, &er) || er.Response.StatusCode != 422 {
			t.Errorf("%s: create = %v, want 422", name, err)
		}
	}
	if n := len(s.Firewalls()); n != 0 {
		t.Fatalf("%d firewalls made by refused creates", n)
	}
	for range 2 {
		if _, _, err := c.Firewalls.Create(ctx, clusterFirewall("cloudml-ml", tag)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Firewalls()); n != 2 {
		t.Errorf("%d firewalls after two creates of one name, want 2 (names need not be unique)", n)
	}
	if st := s.Stats(); st.Requests[dofake.EndpointFirewallsCreate] != 13 {
		t.Errorf("%d firewall creates counted, want 13", st.Requests[dofake.EndpointFirewallsCreate])
	}
}
