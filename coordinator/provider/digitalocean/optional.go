package digitalocean

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// The coordinator's optional provider interfaces: `cluster up --dry-run`,
// costs and the cost limit, and the cluster's one region.
var (
	_ provider.DryRunner = (*Provider)(nil)
	_ provider.Pricer    = (*Provider)(nil)
	_ provider.Regional  = (*Provider)(nil)
)

// Region is the region every droplet of the cluster is made in.
func (p *Provider) Region() string { return p.cfg.Region }

// Price is one droplet of size's list price, from the sizes the API
// listed at Start.
func (p *Provider) Price(ctx context.Context, size string) (provider.Price, error) {
	s, err := p.size(size)
	if err != nil {
		return provider.Price{}, err
	}
	return provider.Price{Size: s.Slug, Hourly: s.PriceHourly, Monthly: s.PriceMonthly}, nil
}

// PlanCreate is DryRun in the coordinator's terms: the size, region and
// image, the first droplet's user-data with its token masked, and the VPC,
// tags, firewall, SSH keys, cost and the cost guard's verdict as notes.
func (p *Provider) PlanCreate(ctx context.Context, req provider.CreateRequest) (provider.CreatePlan, error) {
	plan, err := p.DryRun(ctx, req)
	if err != nil {
		return provider.CreatePlan{}, err
	}
	notes := []string{
		fmt.Sprintf("%s %s in %s, VPC %s", droplets(plan.Count), strings.Join(plan.Names, ", "), plan.Region, plan.VPC),
		"tags: " + strings.Join(plan.Tags, ", "),
		fmt.Sprintf("cost: $%.4f/h, $%.2f/month (the cluster now: %s, $%.4f/h)", plan.Hourly, plan.Monthly, droplets(plan.ClusterDroplets), plan.ClusterHourly),
	}
	switch {
	case plan.Firewall == "":
		notes = append(notes, "firewall: none (--do-firewall=false): the swarm ports answer on the droplets' public addresses unless your own firewall closes them")
	default:
		state, ssh := "existing", ""
		if plan.FirewallNew {
			state = "new"
		}
		if len(plan.SSHKeys) > 0 {
			ssh = ", ssh 22"
		}
		notes = append(notes, fmt.Sprintf("firewall: %s (%s): inbound only from the cluster's droplets%s", plan.Firewall, state, ssh))
	}
	if len(plan.SSHKeys) > 0 {
		notes = append(notes, "ssh keys: "+strings.Join(plan.SSHKeys, ", "))
	} else {
		notes = append(notes, "ssh keys: none (nobody can log in; add some with --do-ssh-keys)")
	}
	if plan.Refused != nil {
		notes = append(notes, "refused: "+plan.Refused.Error())
	}
	return provider.CreatePlan{Size: plan.Size, Region: plan.Region, Image: plan.Image, UserData: string(plan.UserData), Notes: notes}, nil
}

// droplets is "1 droplet", "3 droplets".
func droplets(n int) string {
	if n == 1 {
		return "1 droplet"
	}
	return fmt.Sprintf("%d droplets", n)
}
