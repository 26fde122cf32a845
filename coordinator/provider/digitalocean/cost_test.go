package digitalocean

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator/cloudinit"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/pki"
)

// TestDryRunCreatesNothing: a dry run reports the droplets, tags and cost
// of a create and its user-data with no token secret in it, and creates no
// droplet, VPC, firewall or join token.
func TestDryRunCreatesNothing(t *testing.T) {
	h := start(t, nil, func(c *Config) { c.MaxHourlyCost = 1 })
	vpcs := len(h.s.VPCs())
	plan, err := h.p.DryRun(t.Context(), provider.CreateRequest{Request: "0123456789abcdef", Count: 3, Pool: "big", Size: "c-4"})
	if err != nil {
		t.Fatalf("DryRun: %v", err)
	}
	st := h.s.Stats()
	t.Logf("dry run of 3 c-4: $%.4f/h, $%.2f/month; droplets created %d, create requests %d, tokens minted %d",
		plan.Hourly, plan.Monthly, st.Created, st.Requests[dofake.EndpointDropletsCreate], len(h.m.Labels()))
	if st.Created != 0 || st.Requests[dofake.EndpointDropletsCreate] != 0 || st.Requests[dofake.EndpointVPCsCreate] != 0 ||
		st.Requests[dofake.EndpointFirewallsCreate] != 0 || len(h.s.Firewalls()) != 0 ||
		len(h.s.VPCs()) != vpcs || len(h.m.Labels()) != 0 {
		t.Errorf("a dry run created something: %+v, %d tokens minted", st, len(h.m.Labels()))
	}
	got := plan
	got.UserData, got.Refused = nil, nil
	want := Plan{
		Cluster: "ml", Region: "fra1", Image: "ubuntu-24-04-x64", Pool: "big", Size: "c-4", Slots: 4,
		VPC: "(new) cloudml-ml-fra1", Firewall: "cloudml-ml", FirewallNew: true, Count: 3,
		Names:       []string{"ml-big-01234567-1", "ml-big-01234567-2", "ml-big-01234567-3"},
		Tags:        []string{"cloudml-cluster:ml", "cloudml-pool:big", "cloudml-req:0123456789abcdef"},
		PriceHourly: 0.125, PriceMonthly: 84, Hourly: 0.375, Monthly: 252, MaxHourlyCost: 1,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
		t.Errorf("DryRun (-want +got):\n%s", diff)
	}
	if plan.Refused != nil {
		t.Errorf("DryRun within the limit: refused %v", plan.Refused)
	}
	cc, err := cloudinit.Parse(plan.UserData)
	if err != nil {
		t.Fatalf("the dry run's user-data: %v", err)
	}
	tok := strings.TrimSpace(cc.File(cloudinit.TokenPath).Content)
	if _, err := pki.ParseToken(tok); err == nil || !strings.Contains(tok, "masked") {
		t.Errorf("the dry run's user-data holds the token %q, want it masked", tok)
	}
	if strings.Contains(string(plan.UserData), h.s.Token()) {
		t.Error("the dry run's user-data holds the API token")
	}

	plan, err = h.p.DryRun(t.Context(), provider.CreateRequest{Count: 9, Size: "c-4"})
	if err != nil || !errors.Is(plan.Refused, ErrCostLimit) {
		t.Errorf("DryRun of $1.125/h with a $1/h limit = %v, refused %v; want the guard's refusal, no error", err, plan.Refused)
	}
}
