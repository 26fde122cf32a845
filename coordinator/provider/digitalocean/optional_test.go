package digitalocean

import (
	"strings"
	"testing"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// TestOptionalInterfaces: the coordinator's dry run, prices and region come
// from the provider's DryRun, size catalog and config.
func TestOptionalInterfaces(t *testing.T) {
	h := start(t, nil, nil)
	if got := h.p.Region(); got != "fra1" {
		t.Errorf("Region = %q, want fra1", got)
	}
	price, err := h.p.Price(t.Context(), "c-4")
	if err != nil || price.Size != "c-4" || price.Hourly != 0.125 || price.Monthly != 84 {
		t.Errorf("Price(c-4) = %+v, %v; want $0.125/h, $84/month", price, err)
	}
	if _, err := h.p.Price(t.Context(), "no-such-size"); err == nil {
		t.Errorf("Price of an unknown size: no error")
	}
	plan, err := h.p.PlanCreate(t.Context(), provider.CreateRequest{Count: 2, Size: "c-4"})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(plan.Notes, "\n")
	if plan.Size != "c-4" || plan.Region != "fra1" || !strings.Contains(notes, "$0.2500/h") || !strings.Contains(notes, "cloudml-cluster:ml") ||
		!strings.Contains(plan.UserData, "#cloud-config") {
		t.Errorf("PlanCreate = %+v", plan)
	}
	if st := h.s.Stats(); st.Created != 0 {
		t.Errorf("PlanCreate created %d droplets", st.Created)
	}
}
