package digitalocean

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator/cloudinit"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

// TestCreateMakesTaggedDropletsEachWithItsToken: each droplet is made in
// the region, of the size, image and SSH keys asked, in the cluster's own
// VPC (not the region's default), tagged with cluster, pool and request,
// and carries user-data with its own join token, whose label names it.
func TestCreateMakesTaggedDropletsEachWithItsToken(t *testing.T) {
	key := dofake.SSHKey{ID: 4242, Fingerprint: "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", Name: "me"}
	h := start(t, func(c *dofake.Config) { c.SSHKeys = []dofake.SSHKey{key} },
		func(c *Config) { c.SSHKeys = []string{"4242"} })
	vpcsBefore := len(h.s.VPCs())
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r1", Count: 3, Pool: "big", Size: "c-2"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(nodes) != 3 {
		t.Fatalf("Create made %d nodes, want 3", len(nodes))
	}
	if got := len(h.s.VPCs()); got != vpcsBefore+1 {
		t.Errorf("%d VPCs after the first create, want the %d defaults and the cluster's", got, vpcsBefore)
	}
	labels := h.m.Labels()
	vpcs := h.s.VPCs()
	clusterVPC := vpcs[len(vpcs)-1] // the defaults come first
	for _, n := range nodes {
		var id int
		fmt.Sscan(n.ID, &id)
		d, ok := h.s.Droplet(id)
		if !ok {
			t.Fatalf("node %s is no droplet", n.ID)
		}
		wantTags := []string{"cloudml-cluster:ml", "cloudml-pool:big", "cloudml-req:r1"}
		if diff := cmp.Diff(wantTags, d.Tags); diff != "" {
			t.Errorf("droplet %d tags (-want +got):\n%s", id, diff)
		}
		if d.Region != "fra1" || d.Size != "c-2" || d.Image != "ubuntu-24-04-x64" || d.VPCUUID != clusterVPC || !slices.Equal(d.SSHKeys, []string{"4242"}) {
			t.Errorf("droplet %+v: want fra1, c-2, ubuntu-24-04-x64, the cluster's VPC and key 4242", d)
		}
		if n.Name != d.Name || n.Pool != "big" || n.Request != "r1" || n.Size != "c-2" || n.State != provider.StateCreating {
			t.Errorf("node %+v: want the droplet's name, pool big, request r1, size c-2, creating", n)
		}
		label := TokenLabel("ml", "r1", d.Name)
		if !slices.Contains(labels, label) {
			t.Errorf("no token minted with label %q (minted %q)", label, labels)
		}
		ud, _ := h.s.UserData(id)
		cc, err := cloudinit.Parse([]byte(ud))
		if err != nil {
			t.Fatalf("droplet %d user-data: %v", id, err)
		}
		if got, want := strings.TrimSpace(cc.File(cloudinit.TokenPath).Content), h.m.tokens[label]; got != want {
			t.Errorf("droplet %d carries token %q, want the one minted for it, %q", id, got, want)
		}
		argv, err := cc.AgentCommand()
		if err != nil || !slices.Contains(argv, "--slots") || argv[slices.Index(argv, "--slots")+1] != "2" || !slices.Contains(argv, "coord.example.com:7443") {
			t.Errorf("agent command %q (%v): want --slots 2 (c-2's vCPUs) and the advertise address", argv, err)
		}
		if strings.Contains(ud, h.s.Token()) {
			t.Errorf("droplet %d user-data holds the API token", id)
		}
	}
	if len(labels) != 3 {
		t.Errorf("%d tokens minted for 3 droplets", len(labels))
	}
	if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "r2", Count: 1}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := len(h.s.VPCs()); got != vpcsBefore+1 {
		t.Errorf("%d VPCs after a second create, want the cluster's reused", got)
	}
}

// TestLostCreateResponsesMakeNoDuplicates: 100 creates whose droplet is
// made and whose answer is lost (500, 503, 429, a closed connection), and
// 20 that fail before any effect, give 100 droplets for 100 asked.
func TestLostCreateResponsesMakeNoDuplicates(t *testing.T) {
	// Enough retries that 20 failures in a row, at worst on one droplet,
	// do not exhaust them.
	h := start(t, func(c *dofake.Config) { c.DropletLimit = 200 }, func(c *Config) { c.Retry.Max = 25 })
	lost := []dofake.Fault{
		{Status: http.StatusInternalServerError, AfterEffect: true, Times: 25},
		{Status: http.StatusServiceUnavailable, AfterEffect: true, Times: 25},
		{Status: http.StatusTooManyRequests, AfterEffect: true, Times: 25},
		{Drop: true, AfterEffect: true, Times: 25},
	}
	var injected []*dofake.Injection
	for i, f := range lost {
		injected = append(injected, h.s.Inject(dofake.EndpointDropletsCreate, f))
		if i == 1 { // no effect: the create is sent again
			injected = append(injected, h.s.Inject(dofake.EndpointDropletsCreate, dofake.Fault{Status: http.StatusBadGateway, Times: 20}))
		}
	}
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "lost", Count: 100})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	fired := 0
	for _, in := range injected {
		fired += in.Fired()
	}
	names := map[string]int{}
	for _, d := range tagged(h.s) {
		names[d.Name]++
	}
	st := h.s.Stats()
	dups := st.Created - len(names)
	t.Logf("lost create responses: %d (and %d failed creates); droplets asked 100, created %d, duplicates %d",
		st.Faults[dofake.EndpointDropletsCreate]-20, 20, st.Created, dups)
	if fired != 120 || len(nodes) != 100 || st.Created != 100 || len(names) != 100 || dups != 0 {
		t.Errorf("%d faults fired (want 120); %d nodes returned, %d droplets created, %d names: want 100 of each", fired, len(nodes), st.Created, len(names))
	}
}

// TestCreateHonoursRetryAfter: a create answered 429 with Retry-After: 1
// is sent again no sooner than a second later, though the backoff is 1 ms;
// so is a list (godo's retrying transport).
func TestCreateHonoursRetryAfter(t *testing.T) {
	h := start(t, nil, nil)
	for _, ep := range []dofake.Endpoint{dofake.EndpointDropletsCreate, dofake.EndpointDropletsList} {
		limited := h.s.Inject(ep, dofake.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Times: 1})
		next := h.s.Inject(ep, dofake.Fault{Times: 1}) // records when the retry came
		var err error
		if ep == dofake.EndpointDropletsCreate {
			_, err = h.p.Create(t.Context(), provider.CreateRequest{Request: "ra", Count: 1})
		} else {
			_, err = h.p.List(t.Context())
		}
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
		if limited.Fired() != 1 || next.Fired() != 1 {
			t.Fatalf("%s: 429 fired %d times, the retry %d: want 1 and 1", ep, limited.Fired(), next.Fired())
		}
		if gap := next.FiredAt()[0].Sub(limited.FiredAt()[0]); gap < time.Second {
			t.Errorf("%s retried %v after a 429 with Retry-After: 1, want at least 1s", ep, gap)
		}
	}
	if got := h.s.Stats().Created; got != 1 {
		t.Errorf("%d droplets created, want 1", got)
	}
}

// TestCostGuard: a create that would bring the cluster past the hourly
// limit is refused, naming both figures, and makes nothing; one within it
// goes through.
func TestCostGuard(t *testing.T) {
	h := start(t, nil, func(c *Config) { c.MaxHourlyCost = 0.1 })
	if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "a", Count: 2}); err != nil { // 2 × $0.03571
		t.Fatalf("Create within the limit: %v", err)
	}
	_, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "b", Count: 1})
	if !errors.Is(err, ErrCostLimit) || !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("Create past the limit = %v, want ErrCostLimit and ErrCapacity", err)
	}
	for _, want := range []string{"$0.1071/h", "$0.1000/h", "2 droplets cost $0.0714/h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if got := h.s.Stats().Created; got != 2 {
		t.Errorf("%d droplets created, want the 2 within the limit", got)
	}
	if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "c", Count: 1, Size: "s-1vcpu-512mb-10gb"}); err != nil {
		t.Errorf("a $0.006/h droplet within the limit: %v", err)
	}
}

// TestCreateRefusals: a size the region lacks is invalid; the account's
// droplet limit is capacity, with the droplets made before it returned.
func TestCreateRefusals(t *testing.T) {
	h := start(t, func(c *dofake.Config) { c.DropletLimit = 2 }, func(c *Config) { c.Parallel = 1 })
	for _, size := range []string{"c-99", "gpu-h100x1-80gb"} {
		if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "x", Count: 1, Size: size}); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("Create of size %s = %v, want ErrInvalid", size, err)
		}
	}
	nodes, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "y", Count: 3})
	if !errors.Is(err, provider.ErrCapacity) || len(nodes) != 2 {
		t.Errorf("Create of 3 with a limit of 2 = %d nodes, %v; want 2 and ErrCapacity", len(nodes), err)
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(Config{}) = %v, want ErrInvalidConfig", err)
	}
	p := newProvider(t, testConfig(h.s))
	if _, err := p.Create(t.Context(), provider.CreateRequest{Request: "z", Count: 1}); !errors.Is(err, provider.ErrNotStarted) {
		t.Errorf("Create before Start = %v, want ErrNotStarted", err)
	}
}

func TestDropletName(t *testing.T) {
	for _, c := range []struct {
		cluster, pool, request string
		k                      int
		want                   string
	}{
		{"ml", "default", "0123456789abcdef", 1, "ml-default-01234567-1"},
		{"ml", "p", "r1", 12, "ml-p-r1-12"},
		{strings.Repeat("c", 30), strings.Repeat("p", 40), strings.Repeat("r", 40), 100,
			strings.Repeat("c", 30) + "-" + strings.Repeat("p", 19) + "-rrrrrrrr-100"},
	} {
		got := DropletName(c.cluster, c.pool, c.request, c.k)
		if got != c.want || len(got) > 63 {
			t.Errorf("DropletName(%s, %s, %s, %d) = %q, want %q", c.cluster, c.pool, c.request, c.k, got, c.want)
		}
	}
}
