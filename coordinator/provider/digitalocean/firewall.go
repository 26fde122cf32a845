package digitalocean

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/digitalocean/godo"
)

// The cluster's Cloud Firewall. DigitalOcean's Ubuntu image has ufw off,
// so without one Docker Swarm's ports (2377/tcp, 7946/tcp+udp, 4789/udp)
// would answer on every droplet's public address. With Config.Firewall,
// the first create finds the firewall named "cloudml-<cluster>" or makes
// it, before any droplet: it applies to the tag "cloudml-cluster:<cluster>",
// so every droplet of the cluster is behind it from its creation with no
// call per droplet. Inbound it admits all TCP, UDP and ICMP from droplets
// with that tag alone (agents dial out to the coordinator, so nothing else
// needs in), and SSH (22/tcp) from anywhere only when Config.SSHKeys names
// keys; outbound it lets everything go. It is the provider's: one found
// with other rules, or not applied to the tag, is put back to these rules
// (keeping the tags and droplets it is applied to besides), so nothing
// added by hand opens the cluster. A firewall costs nothing; cluster down
// and gc leave it for the next cluster of that name.
//
// Firewall names need not be unique and the API has no idempotency key, so
// a create goes through the client that never retries, and is sent again
// only after listing firewalls finds none of that name.

// FirewallName is the name of cluster's Cloud Firewall; a cluster name
// fits DigitalOcean's firewall names (a letter or digit, then letters,
// digits, '.' and '-').
func FirewallName(cluster string) string { return "cloudml-" + cluster }

// anywhere is every IPv4 and IPv6 address.
var anywhere = []string{"0.0.0.0/0", "::/0"}

// firewallRequest is the cluster's firewall as the provider wants it.
func (p *Provider) firewallRequest() *godo.FirewallRequest {
	tag := ClusterTag(p.cfg.Cluster)
	from := &godo.Sources{Tags: []string{tag}}
	to := &godo.Destinations{Addresses: anywhere}
	in := []godo.InboundRule{
		{Protocol: "tcp", PortRange: "all", Sources: from},
		{Protocol: "udp", PortRange: "all", Sources: from},
		{Protocol: "icmp", Sources: from},
	}
	if len(p.cfg.SSHKeys) > 0 {
		in = append(in, godo.InboundRule{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Addresses: anywhere}})
	}
	return &godo.FirewallRequest{
		Name:         FirewallName(p.cfg.Cluster),
		InboundRules: in,
		OutboundRules: []godo.OutboundRule{
			{Protocol: "tcp", PortRange: "all", Destinations: to},
			{Protocol: "udp", PortRange: "all", Destinations: to},
			{Protocol: "icmp", Destinations: to},
		},
		Tags: []string{tag},
	}
}

// ensureFirewall finds or makes the cluster's firewall, once per provider,
// and puts its rules back if they differ; it returns the firewall's id.
func (p *Provider) ensureFirewall(ctx context.Context) (string, error) {
	p.fwMu.Lock()
	defer p.fwMu.Unlock()
	p.mu.Lock()
	id := p.firewall
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	want := p.firewallRequest()
	fw, err := p.findFirewall(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case fw == nil:
		if fw, err = p.createFirewall(ctx, want); err != nil {
			return "", err
		}
		p.log.Info("firewall created for the cluster", "firewall", fw.ID, "name", fw.Name, "tag", ClusterTag(p.cfg.Cluster), "ssh", len(p.cfg.SSHKeys) > 0)
	case !firewallMatches(fw, want):
		up := *want
		up.Tags = union(fw.Tags, want.Tags)
		up.DropletIDs = fw.DropletIDs
		p.log.Warn("the cluster's firewall has other rules or is not applied to the cluster's tag: putting its rules back",
			"firewall", fw.ID, "name", fw.Name, "inbound", ruleKeys(fw.InboundRules, nil), "tags", fw.Tags)
		_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
			fw, r, err = p.api.Firewalls.Update(ctx, fw.ID, &up)
			return r, err
		})
		if err != nil {
			return "", firewallAPIError("update firewall "+want.Name, err)
		}
	default:
		p.log.Debug("the cluster's firewall exists", "firewall", fw.ID, "name", fw.Name)
	}
	p.mu.Lock()
	p.firewall = fw.ID
	p.mu.Unlock()
	return fw.ID, nil
}

// createFirewall makes the firewall, after making its tag (a firewall may
// only name tags that exist). It sends the create until the API answers,
// listing firewalls by name before every retry.
func (p *Provider) createFirewall(ctx context.Context, want *godo.FirewallRequest) (*godo.Firewall, error) {
	if err := p.ensureTag(ctx, ClusterTag(p.cfg.Cluster)); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var fw *godo.Firewall
		_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
			fw, r, err = p.once.Firewalls.Create(ctx, want)
			return r, err
		})
		if err == nil {
			return fw, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create firewall %s: %w", want.Name, ctx.Err())
		}
		if !retryable(err) {
			return nil, firewallAPIError("create firewall "+want.Name, err)
		}
		// The create may have worked and its answer been lost: look first.
		found, lerr := p.findFirewall(ctx)
		if lerr != nil {
			return nil, fmt.Errorf("create firewall %s failed (%w) and listing firewalls failed, so it is not retried: %w", want.Name, apiError("create", err), lerr)
		}
		if found != nil {
			p.log.Warn("firewall create answered with an error, but the firewall exists: keeping it", "firewall", found.ID, "error", err)
			return found, nil
		}
		if attempt >= p.cfg.Retry.Max {
			return nil, fmt.Errorf("create firewall %s: gave up after %d attempts: %w", want.Name, attempt+1, apiError("create", err))
		}
		wait := p.backoff(attempt, err)
		p.log.Warn("firewall create failed and made none; retrying", "attempt", attempt+1, "wait", wait, "error", err)
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("create firewall %s: %w", want.Name, err)
		}
	}
}

// ensureTag makes tag unless it exists.
func (p *Provider) ensureTag(ctx context.Context, tag string) error {
	_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
		_, r, err = p.api.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag})
		return r, err
	})
	if err == nil {
		return nil
	}
	// An existing tag may be refused as a duplicate: it is there all the same.
	_, gerr := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
		_, r, err = p.api.Tags.Get(ctx, tag)
		return r, err
	})
	if gerr == nil {
		return nil
	}
	return apiError("create tag "+tag, err)
}

// findFirewall returns the cluster's firewall, nil if there is none; of
// several with its name, the oldest.
func (p *Provider) findFirewall(ctx context.Context) (*godo.Firewall, error) {
	name := FirewallName(p.cfg.Cluster)
	var found []godo.Firewall
	err := pages(ctx, p, "list firewalls", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		fws, r, err := p.api.Firewalls.List(ctx, opt)
		for _, fw := range fws {
			if fw.Name == name {
				found = append(found, fw)
			}
		}
		return r, err
	})
	if err != nil || len(found) == 0 {
		return nil, err
	}
	if len(found) > 1 {
		var ids []string
		for _, fw := range found {
			ids = append(ids, fw.ID)
		}
		p.log.Warn("several firewalls carry the cluster's firewall name: using the oldest", "name", name, "ids", ids)
	}
	oldest := slices.MinFunc(found, func(a, b godo.Firewall) int { return strings.Compare(a.Created, b.Created) })
	return &oldest, nil
}

// firewallMatches says whether fw has want's rules and is applied to
// want's tags (among others).
func firewallMatches(fw *godo.Firewall, want *godo.FirewallRequest) bool {
	for _, t := range want.Tags {
		if !slices.Contains(fw.Tags, t) {
			return false
		}
	}
	return slices.Equal(ruleKeys(fw.InboundRules, nil), ruleKeys(want.InboundRules, nil)) &&
		slices.Equal(ruleKeys(nil, fw.OutboundRules), ruleKeys(nil, want.OutboundRules))
}

// ruleKeys renders rules in one canonical form each, sorted: the API
// stores protocols in lowercase, "all" ports as "0" (an ICMP rule's
// always) and adds action "allow".
func ruleKeys(in []godo.InboundRule, out []godo.OutboundRule) []string {
	var keys []string
	key := func(proto, ports string, action godo.FirewallRuleAction, addrs, tags []string, ids []int, lbs, k8s []string) string {
		proto = strings.ToLower(proto)
		switch {
		case proto == "icmp", ports == "", ports == "0", ports == "all", ports == "1-65535":
			ports = "all"
		}
		if action == "" {
			action = godo.FirewallRuleActionAllow
		}
		var sids []string
		for _, id := range ids {
			sids = append(sids, strconv.Itoa(id))
		}
		set := func(s []string) string { s = slices.Clone(s); slices.Sort(s); return strings.Join(s, ",") }
		return fmt.Sprintf("%s %s %s addresses=%s tags=%s droplets=%s lbs=%s k8s=%s",
			action, proto, ports, set(addrs), set(tags), set(sids), set(lbs), set(k8s))
	}
	for _, r := range in {
		s := r.Sources
		if s == nil {
			s = &godo.Sources{}
		}
		keys = append(keys, key(r.Protocol, r.PortRange, r.Action, s.Addresses, s.Tags, s.DropletIDs, s.LoadBalancerUIDs, s.KubernetesIDs))
	}
	for _, r := range out {
		d := r.Destinations
		if d == nil {
			d = &godo.Destinations{}
		}
		keys = append(keys, key(r.Protocol, r.PortRange, r.Action, d.Addresses, d.Tags, d.DropletIDs, d.LoadBalancerUIDs, d.KubernetesIDs))
	}
	slices.Sort(keys)
	return keys
}

// union is a's elements followed by b's that a lacks.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// firewallStatus is the firewall as DryRun reports it, making nothing:
// its name and whether it is still to be made; "" when Config.Firewall is
// off.
func (p *Provider) firewallStatus(ctx context.Context) (name string, isNew bool, err error) {
	if !p.cfg.Firewall {
		return "", false, nil
	}
	name = FirewallName(p.cfg.Cluster)
	p.mu.Lock()
	known := p.firewall != ""
	p.mu.Unlock()
	if known {
		return name, false, nil
	}
	fw, err := p.findFirewall(ctx)
	if err != nil {
		return "", false, err
	}
	return name, fw == nil, nil
}

// firewallAPIError is apiError, naming the scopes a token refused (403)
// lacks.
func firewallAPIError(what string, err error) error {
	e := apiError(what, err)
	if statusOf(err) == http.StatusForbidden {
		return fmt.Errorf("%w (a custom-scope token needs firewall:create, firewall:read and firewall:update)", e)
	}
	return e
}

// firewallError is a create refused because the firewall could not be
// made: no droplet is made without it.
func firewallError(cluster string, err error) error {
	return fmt.Errorf("no droplet created: the cluster's firewall %s could not be found or made, and droplets are not made without it "+
		"(--do-firewall=false turns it off, for users whose own firewall closes the swarm ports): %w", FirewallName(cluster), err)
}
