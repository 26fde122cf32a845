package digitalocean

import (
	"cmp"
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// List returns every droplet with the cluster's tag, in any status, GPU
// droplets included (listTag), sorted by id.
func (p *Provider) List(ctx context.Context) ([]provider.Node, error) {
	if _, err := p.ready(); err != nil {
		return nil, err
	}
	ds, err := p.listTag(ctx, ClusterTag(p.cfg.Cluster))
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	nodes := make([]provider.Node, 0, len(ds))
	for _, d := range ds {
		n := p.node(d)
		if p.deleting[d.ID] {
			n.State = provider.StateDeleting
		}
		nodes = append(nodes, n)
	}
	sortNodes(nodes)
	return nodes, nil
}

// sortNodes sorts nodes by id.
func sortNodes(nodes []provider.Node) {
	slices.SortFunc(nodes, func(a, b provider.Node) int { return cmp.Compare(a.ID, b.ID) })
}

// listTag returns the droplets with tag: those the API lists by tag, and
// the GPU droplets, which it lists only with type=gpus, a filter that
// cannot be combined with tag_name: those are listed all and filtered
// here (an account has few).
func (p *Provider) listTag(ctx context.Context, tag string) ([]godo.Droplet, error) {
	plain, err := p.listTagged(ctx, tag, false)
	if err != nil {
		return nil, err
	}
	gpus, err := p.listTagged(ctx, tag, true)
	for _, d := range gpus {
		if !slices.ContainsFunc(plain, func(e godo.Droplet) bool { return e.ID == d.ID }) {
			plain = append(plain, d)
		}
	}
	return plain, err
}

// listTagged returns the droplets with tag, GPU droplets or the others,
// every page.
func (p *Provider) listTagged(ctx context.Context, tag string, gpus bool) ([]godo.Droplet, error) {
	var all []godo.Droplet
	q := url.Values{"tag_name": {tag}}
	if gpus {
		q = url.Values{"type": {"gpus"}}
	}
	err := pages(ctx, p, "list droplets tagged "+tag, func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		q.Set("page", strconv.Itoa(opt.Page))
		q.Set("per_page", strconv.Itoa(opt.PerPage))
		req, err := p.api.NewRequest(ctx, http.MethodGet, "v2/droplets?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Droplets []godo.Droplet `json:"droplets"`
			Links    *godo.Links    `json:"links"`
		}
		resp, err := p.api.Do(ctx, req, &page)
		if err != nil {
			return resp, err
		}
		for _, d := range page.Droplets {
			if slices.Contains(d.Tags, tag) {
				all = append(all, d)
			}
		}
		resp.Links = page.Links // what godo's own lists do
		return resp, nil
	})
	return all, err
}

// node is d as the coordinator sees it. p.mu need not be held.
func (p *Provider) node(d godo.Droplet) provider.Node {
	n := provider.Node{
		ID:      strconv.Itoa(d.ID),
		Name:    d.Name,
		Pool:    tagValue(d.Tags, PoolTagPrefix),
		Request: tagValue(d.Tags, RequestTagPrefix),
		Size:    d.SizeSlug,
		State:   state(d.Status),
		Founder: slices.Contains(d.Tags, FounderTag),
	}
	pub, priv := addrs(d)
	n.PublicIP, n.PrivateIP = pub, priv
	if t, err := time.Parse(time.RFC3339, d.Created); err == nil {
		n.Created = t
	}
	return n
}

// addrs returns d's public and private IPv4 addresses (zero if none yet).
func addrs(d godo.Droplet) (public, private netip.Addr) {
	if s, err := d.PublicIPv4(); err == nil && s != "" {
		public, _ = netip.ParseAddr(s)
	}
	if s, err := d.PrivateIPv4(); err == nil && s != "" {
		private, _ = netip.ParseAddr(s)
	}
	return public, private
}

// state maps a droplet status (new, active, off, archive).
func state(status string) provider.State {
	switch status {
	case "active":
		return provider.StateRunning
	case "off", "archive":
		return provider.StateStopped
	}
	return provider.StateCreating
}

// tagValue is the value of the first tag with prefix, "" if none.
func tagValue(tags []string, prefix string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, prefix); ok {
			return v
		}
	}
	return ""
}

// Reconcile is provider.ReconcileByList. A known droplet found powered
// off is reported in the log and left off: powering it on is a droplet
// action (POST /v2/droplets/{id}/actions) whose progress must be polled,
// and a droplet that someone switched off may be off on purpose.
func (p *Provider) Reconcile(ctx context.Context, req provider.ReconcileRequest) (provider.ReconcileReport, error) {
	r, err := provider.ReconcileByList(ctx, p, req)
	for _, n := range r.Listed {
		if n.State == provider.StateStopped && slices.Contains(req.Known, n.ID) {
			p.log.Warn("droplet of the cluster is powered off; its node stays down until it is powered on", "droplet", n.ID, "name", n.Name)
		}
	}
	return r, err
}
