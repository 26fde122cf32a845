package digitalocean

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// The cluster's VPC. Without Config.VPC, droplets join the VPC named
// "cloudml-<cluster>-<region>", which Prepare (or else the first create)
// finds or makes;
// without any vpc_uuid they would join the region's default VPC, shared
// with every other droplet of the account there. VPC names are unique in
// an account, so a create whose answer was lost, retried, is refused as a
// duplicate and the list then finds it. A VPC costs nothing; cluster down
// leaves it for the next cluster of that name.

// ensureVPC returns the uuid of the VPC droplets join, finding or making
// the cluster's on first use.
func (p *Provider) ensureVPC(ctx context.Context) (string, error) {
	p.vpcMu.Lock()
	defer p.vpcMu.Unlock()
	p.mu.Lock()
	id := p.vpc
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	v, err := p.findVPC(ctx)
	if err != nil {
		return "", err
	}
	if v == nil {
		name := vpcName(p.cfg.Cluster, p.cfg.Region)
		_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
			v, r, err = p.api.VPCs.Create(ctx, &godo.VPCCreateRequest{
				Name: name, RegionSlug: p.cfg.Region,
				Description: "CloudML cluster " + p.cfg.Cluster + ": swarm traffic between its droplets",
			})
			return r, err
		})
		if statusOf(err) == http.StatusUnprocessableEntity || statusOf(err) == http.StatusConflict {
			if v, _ = p.findVPC(ctx); v != nil { // made by a create whose answer was lost
				err = nil
			}
		}
		if err != nil {
			return "", apiError("create VPC "+name, err)
		}
		p.log.Info("VPC created for the cluster", "vpc", v.ID, "name", v.Name, "ip_range", v.IPRange)
	}
	p.mu.Lock()
	p.vpc, p.vpcRange = v.ID, v.IPRange
	p.mu.Unlock()
	return v.ID, nil
}

// findVPC returns the cluster's VPC in the region, nil if there is none.
func (p *Provider) findVPC(ctx context.Context) (*godo.VPC, error) {
	name := vpcName(p.cfg.Cluster, p.cfg.Region)
	var found *godo.VPC
	err := pages(ctx, p, "list VPCs", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		vs, r, err := p.api.VPCs.List(ctx, opt)
		for _, v := range vs {
			if v.Name == name && v.RegionSlug == p.cfg.Region && found == nil {
				found = v
			}
		}
		return r, err
	})
	return found, err
}

// checkVPC checks that the VPC given exists in the region, and notes its
// ip_range.
func (p *Provider) checkVPC(ctx context.Context, id string) error {
	var v *godo.VPC
	_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
		v, r, err = p.api.VPCs.Get(ctx, id)
		return r, err
	})
	if statusOf(err) == http.StatusNotFound {
		return fmt.Errorf("%w: no VPC %s", provider.ErrInvalid, id)
	}
	if err != nil {
		return apiError("get VPC "+id, err)
	}
	if v.RegionSlug != p.cfg.Region {
		return fmt.Errorf("%w: VPC %s is in region %s, not %s", provider.ErrInvalid, id, v.RegionSlug, p.cfg.Region)
	}
	p.mu.Lock()
	p.vpcRange = v.IPRange
	p.mu.Unlock()
	return nil
}

var _ provider.Preparer = (*Provider)(nil)

// Prepare runs before the coordinator listens and before Start: it checks
// the region, finds or makes the cluster's VPC (or checks the one given),
// and returns its ip_range as the swarm peers, so that agents on an image
// with ufw active open the swarm ports to the VPC alone (--swarm-peers
// overrides it). The VPC is made here rather than at the first create
// because its range is known only once it exists; it costs nothing and
// stays, so Close has nothing to undo. The cluster's firewall is made at
// the first create.
func (p *Provider) Prepare(ctx context.Context) (provider.Prepared, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return provider.Prepared{}, provider.ErrNotStarted
	}
	if err := p.checkRegion(ctx); err != nil {
		return provider.Prepared{}, err
	}
	if p.cfg.VPC != "" {
		if err := p.checkVPC(ctx, p.cfg.VPC); err != nil {
			return provider.Prepared{}, err
		}
	} else if _, err := p.ensureVPC(ctx); err != nil {
		return provider.Prepared{}, err
	}
	p.mu.Lock()
	id, ipRange := p.vpc, p.vpcRange
	p.mu.Unlock()
	pfx, err := netip.ParsePrefix(ipRange)
	if err != nil {
		return provider.Prepared{}, fmt.Errorf("%w: VPC %s has no usable ip_range (%q)", ErrAPI, id, ipRange)
	}
	p.log.Info("swarm peers: the cluster's VPC", "vpc", id, "ip_range", pfx.Masked())
	return provider.Prepared{PeerCIDRs: []string{pfx.Masked().String()}}, nil
}
