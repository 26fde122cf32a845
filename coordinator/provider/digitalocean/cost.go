package digitalocean

import (
	"context"
	"fmt"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/pki"
)

// Cost guard and dry run. Prices are the list prices of the sizes API
// (price_hourly, price_monthly); DigitalOcean bills a droplet by the hour
// up to its monthly price, whether it runs or is off.

// reservation is the hourly cost of a create under way, counted by the
// cost guard until its droplets are listed.
type reservation struct {
	request string
	hourly  float64
}

// reserve applies the cost guard to count droplets of size for request:
// with the cluster's droplets and the creates under way it must stay
// within Config.MaxHourlyCost. The release func ends the reservation.
func (p *Provider) reserve(ctx context.Context, request string, count int, size godo.Size) (func(), error) {
	if p.cfg.MaxHourlyCost <= 0 {
		return func() {}, nil
	}
	ds, err := p.listTag(ctx, ClusterTag(p.cfg.Cluster))
	if err != nil {
		return nil, fmt.Errorf("cost guard: %w", err)
	}
	add := float64(count) * size.PriceHourly
	p.mu.Lock()
	defer p.mu.Unlock()
	now, n := p.clusterCost(ds)
	if err := p.guard(now, n, count, size, add); err != nil {
		return nil, err
	}
	r := &reservation{request: request, hourly: add}
	p.inflight[r] = struct{}{}
	return func() {
		p.mu.Lock()
		delete(p.inflight, r)
		p.mu.Unlock()
	}, nil
}

// clusterCost is the hourly cost of the droplets ds and of the creates
// under way (droplets of those are counted with their create), and how
// many droplets that is. p.mu must be held.
func (p *Provider) clusterCost(ds []godo.Droplet) (float64, int) {
	inflight := map[string]bool{}
	var hourly float64
	for r := range p.inflight {
		inflight[r.request] = true
		hourly += r.hourly
	}
	n := 0
	for _, d := range ds {
		if inflight[tagValue(d.Tags, RequestTagPrefix)] {
			continue
		}
		n++
		if d.Size != nil && d.Size.PriceHourly > 0 {
			hourly += d.Size.PriceHourly
		} else {
			hourly += p.sizes[d.SizeSlug].PriceHourly
		}
	}
	return hourly, n
}

// guard refuses count droplets of size (add dollars an hour) when the
// cluster costs now an hour with n droplets.
func (p *Provider) guard(now float64, n, count int, size godo.Size, add float64) error {
	max := p.cfg.MaxHourlyCost
	if max <= 0 || now+add <= max+1e-9 {
		return nil
	}
	return fmt.Errorf("%w: %w: %d more %s droplets ($%.4f/h) would bring cluster %s to $%.4f/h, over the limit of $%.4f/h (--max-hourly-cost); its %d droplets cost $%.4f/h now",
		provider.ErrCapacity, ErrCostLimit, count, size.Slug, add, p.cfg.Cluster, now+add, max, n, now)
}

// Plan is what a create would do and cost, as DryRun reports it.
type Plan struct {
	// Cluster, Region, Image and Pool place the droplets; Size is the
	// size slug, Slots each agent's slots.
	Cluster, Region, Image, Pool, Size string
	Slots                              int
	// VPC is the uuid of the VPC droplets join, or, when the cluster's is
	// still to be made, "(new) <name>".
	VPC string
	// Firewall is the name of the cluster's firewall, "" when
	// Config.Firewall is off; FirewallNew says it is still to be made.
	Firewall    string
	FirewallNew bool
	// Count droplets, named Names, tagged Tags, with SSHKeys.
	Count   int
	Names   []string
	Tags    []string
	SSHKeys []string
	// PriceHourly and PriceMonthly are one droplet's list prices; Hourly
	// and Monthly are Count droplets'.
	PriceHourly, PriceMonthly float64
	Hourly, Monthly           float64
	// ClusterDroplets cost ClusterHourly now (the cluster's droplets and
	// the creates under way).
	ClusterDroplets int
	ClusterHourly   float64
	// MaxHourlyCost is the cost guard (0: none); Refused is the guard's
	// refusal, nil when the create would pass.
	MaxHourlyCost float64
	Refused       error
	// UserData is the first droplet's user-data with the join token's
	// secret masked; no token was minted for it.
	UserData []byte
}

// DryRun says what Create(req) would make and what it would cost, and
// renders the first droplet's user-data with its token masked. It
// creates nothing (no droplet, VPC, firewall or join token) and only reads the
// API. A request the cost guard would refuse is not an error: Plan.Refused
// says so.
func (p *Provider) DryRun(ctx context.Context, req provider.CreateRequest) (Plan, error) {
	if req.Request == "" {
		req.Request = provider.NewRequestID()
	}
	if err := req.Validate(); err != nil {
		return Plan{}, err
	}
	t, err := p.ready()
	if err != nil {
		return Plan{}, err
	}
	size, err := p.size(req.Size)
	if err != nil {
		return Plan{}, err
	}
	slots := req.Slots
	if slots == 0 {
		slots = size.Vcpus
	}
	vpc := p.cfg.VPC
	if vpc == "" {
		p.mu.Lock()
		vpc = p.vpc
		p.mu.Unlock()
	}
	if vpc == "" {
		v, err := p.findVPC(ctx)
		if err != nil {
			return Plan{}, err
		}
		vpc = "(new) " + vpcName(p.cfg.Cluster, p.cfg.Region)
		if v != nil {
			vpc = v.ID
		}
	}
	fw, fwNew, err := p.firewallStatus(ctx)
	if err != nil {
		return Plan{}, err
	}
	ds, err := p.listTag(ctx, ClusterTag(p.cfg.Cluster))
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{
		Firewall: fw, FirewallNew: fwNew,
		Cluster: p.cfg.Cluster, Region: p.cfg.Region, Image: p.cfg.Image, Pool: req.Pool, Size: size.Slug,
		Slots: slots, VPC: vpc, Count: req.Count, SSHKeys: append([]string(nil), p.cfg.SSHKeys...),
		PriceHourly: size.PriceHourly, PriceMonthly: size.PriceMonthly,
		Hourly: float64(req.Count) * size.PriceHourly, Monthly: float64(req.Count) * size.PriceMonthly,
		MaxHourlyCost: p.cfg.MaxHourlyCost,
	}
	s := p.spec(req, size, slots, vpc, 1)
	plan.Tags = s.req.Tags
	for k := 1; k <= req.Count; k++ {
		plan.Names = append(plan.Names, DropletName(p.cfg.Cluster, req.Pool, req.Request, k))
	}
	p.mu.Lock()
	plan.ClusterHourly, plan.ClusterDroplets = p.clusterCost(ds)
	plan.Refused = p.guard(plan.ClusterHourly, plan.ClusterDroplets, req.Count, size, plan.Hourly)
	p.mu.Unlock()

	// A token of the right shape that the coordinator never minted: the
	// user-data is the real one but for the secret, which is masked anyway.
	ca, err := pki.ParseCert(t.CACertPEM)
	if err != nil {
		return Plan{}, fmt.Errorf("dry run: the coordinator's CA: %w", err)
	}
	ud, err := p.userData(t, s, pki.NewToken(pki.Fingerprint(ca)).String())
	if err != nil {
		return Plan{}, fmt.Errorf("dry run: %w", err)
	}
	plan.UserData = ud.Masked()
	return plan, nil
}
