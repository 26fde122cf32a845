package digitalocean

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

func nodeIDs(nodes []provider.Node) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// TestDeleteUnderFaults: a delete of 10 droplets through failing,
// rate-limited, slow and answer-losing DELETEs, failing GETs and a
// deletion that lags behind the 204 ends with no droplet tagged for the
// cluster, and Delete returns only then.
func TestDeleteUnderFaults(t *testing.T) {
	h := start(t, func(c *dofake.Config) { c.DeleteLag = 30 * time.Millisecond },
		func(c *Config) { c.RequestTimeout = time.Second })
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "d", Count: 10})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, f := range []dofake.Fault{
		{Status: http.StatusInternalServerError, Times: 12}, // exhausts godo's retries of some DELETEs
		{Status: http.StatusTooManyRequests, Times: 2},
		{Delay: 3 * time.Second, Times: 2}, // the client gives up first: no effect
		{Status: http.StatusServiceUnavailable, AfterEffect: true, Times: 2},
		{Drop: true, AfterEffect: true, Times: 1},
	} {
		h.s.Inject(dofake.EndpointDropletsDelete, f)
	}
	h.s.Inject(dofake.EndpointDropletsGet, dofake.Fault{Status: http.StatusBadGateway, Times: 10})
	if err := h.p.Delete(t.Context(), nodeIDs(nodes)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	left := len(tagged(h.s))
	st := h.s.Stats()
	t.Logf("delete of 10 droplets under %d injected faults: %d droplets left tagged for the cluster", st.Faults[dofake.EndpointDropletsDelete]+st.Faults[dofake.EndpointDropletsGet], left)
	if left != 0 || st.Deleted != 10 {
		t.Errorf("%d droplets left tagged for the cluster, %d deleted; want 0 and 10", left, st.Deleted)
	}
	if listed, err := h.p.List(t.Context()); err != nil || len(listed) != 0 {
		t.Errorf("List after Delete = %v, %v; want nothing", listed, err)
	}
}

// TestDeleteNamesTheDropletsNotGone: while every DELETE fails, Delete
// returns when its context ends, naming the droplet; deleting again once
// the API works finishes the job. Ids that are no droplet's are gone.
func TestDeleteNamesTheDropletsNotGone(t *testing.T) {
	h := start(t, nil, nil)
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "n", Count: 2})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	ids := nodeIDs(nodes)
	h.s.Inject(dofake.EndpointDropletsDelete, dofake.Fault{Status: http.StatusInternalServerError})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err = h.p.Delete(ctx, ids)
	if err == nil || !strings.Contains(err.Error(), "2 of 2 droplets not confirmed gone ("+ids[0]+", "+ids[1]+")") {
		t.Fatalf("Delete with every DELETE failing = %v, want both droplets named", err)
	}
	t.Logf("Delete: %v", err)
	if got := len(tagged(h.s)); got != 2 {
		t.Errorf("%d droplets left, want 2", got)
	}
	h.s.ClearFaults()
	if err := h.p.Delete(t.Context(), append(ids, "999999", "node-1", ids[0])); err != nil {
		t.Errorf("Delete again: %v", err)
	}
	if got := len(tagged(h.s)); got != 0 {
		t.Errorf("%d droplets left, want 0", got)
	}
}

// TestDeleteSparesOtherClustersDroplets: a droplet without this cluster's
// tag is not deleted, even when asked for.
func TestDeleteSparesOtherClustersDroplets(t *testing.T) {
	h := start(t, nil, nil)
	other := newProvider(t, func() Config { c := testConfig(h.s); c.Cluster = "other"; return c }())
	tg, _ := target(t, nil)
	if err := other.Start(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	nodes, err := other.Create(t.Context(), provider.CreateRequest{Request: "o", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = h.p.Delete(t.Context(), nodeIDs(nodes))
	if err == nil || !strings.Contains(err.Error(), "not tagged cloudml-cluster:ml") {
		t.Errorf("Delete of another cluster's droplet = %v, want a refusal", err)
	}
	id, _ := strconv.Atoi(nodes[0].ID)
	if _, ok := h.s.Droplet(id); !ok {
		t.Error("the other cluster's droplet was deleted")
	}
	if listed, err := h.p.List(t.Context()); err != nil || len(listed) != 0 {
		t.Errorf("List of cluster ml = %v, %v; want nothing of cluster other", listed, err)
	}
	if err := h.p.Delete(t.Context(), nil); err != nil {
		t.Errorf("Delete of nothing = %v", err)
	}
	if err := newProvider(t, testConfig(h.s)).Delete(t.Context(), []string{"1"}); !errors.Is(err, provider.ErrNotStarted) {
		t.Errorf("Delete before Start = %v, want ErrNotStarted", err)
	}
}
