package dofake_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/dofake"
)

func TestSizesRegionsAccount(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	sizes, resp, err := c.Sizes.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Meta.Total != len(sizes) || len(sizes) < 10 {
		t.Errorf("%d sizes, meta.total %d", len(sizes), resp.Meta.Total)
	}
	bySlug := map[string]godo.Size{}
	for _, z := range sizes {
		bySlug[z.Slug] = z
	}
	for _, want := range []godo.Size{
		{Slug: "s-1vcpu-1gb", Memory: 1024, Vcpus: 1, Disk: 25, PriceMonthly: 6, PriceHourly: 0.00893},
		{Slug: "s-2vcpu-4gb", Memory: 4096, Vcpus: 2, Disk: 80, PriceMonthly: 24, PriceHourly: 0.03571},
		{Slug: "c-8", Memory: 16384, Vcpus: 8, Disk: 100, PriceMonthly: 168, PriceHourly: 0.25},
	} {
		got := bySlug[want.Slug]
		if !got.Available || len(got.Regions) == 0 {
			t.Errorf("size %s: available %v in %v", want.Slug, got.Available, got.Regions)
		}
		got.Regions, got.Available, got.Transfer, got.Description = nil, false, 0, ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("size %s (-want +got):\n%s", want.Slug, diff)
		}
	}
	if gpu := bySlug["gpu-h100x1-80gb"]; gpu.GPUInfo == nil || gpu.GPUInfo.Count != 1 || gpu.GPUInfo.VRAM.Amount != 80 {
		t.Errorf("gpu size: %+v", gpu.GPUInfo)
	}

	regions, _, err := c.Regions.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	byRegion := map[string]godo.Region{}
	for _, r := range regions {
		byRegion[r.Slug] = r
	}
	if fra := byRegion["fra1"]; !fra.Available || fra.Name != "Frankfurt 1" || !slices.Contains(fra.Sizes, "c-8") || slices.Contains(fra.Sizes, "gpu-h100x1-80gb") {
		t.Errorf("fra1: %+v", fra)
	}
	if ams2 := byRegion["ams2"]; ams2.Available || len(ams2.Sizes) != 0 {
		t.Errorf("ams2: %+v; want unavailable, no sizes", ams2)
	}

	acct, _, err := c.Account.Get(ctx)
	if err != nil || acct.DropletLimit != 25 || acct.Status != "active" {
		t.Errorf("account: %+v, %v", acct, err)
	}
}

func TestVPCs(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	vpcs, resp, err := c.VPCs.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(vpcs) != 11 || resp.Meta.Total != 11 {
		t.Fatalf("%d default VPCs (total %d); want one per available region, 11", len(vpcs), resp.Meta.Total)
	}
	for _, v := range vpcs {
		if !v.Default || v.Name != "default-"+v.RegionSlug || v.URN != "do:vpc:"+v.ID || v.CreatedAt.IsZero() {
			t.Errorf("default vpc %+v", v)
		}
	}

	v, resp, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "cloudml-ml", RegionSlug: "fra1", Description: "swarm"})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create vpc: %v", err)
	}
	if v.IPRange != "10.120.0.0/20" || v.Default || v.RegionSlug != "fra1" {
		t.Errorf("created vpc %+v; want 10.120.0.0/20 picked for it", v)
	}
	got, _, err := c.VPCs.Get(ctx, v.ID)
	if err != nil || got.Name != "cloudml-ml" || got.Description != "swarm" {
		t.Errorf("get vpc: %+v, %v", got, err)
	}
	if _, _, err := c.VPCs.Get(ctx, "nope"); status(err) != 404 {
		t.Errorf("unknown vpc: %v; want 404", err)
	}
	for _, bad := range []godo.VPCCreateRequest{
		{Name: "cloudml-ml", RegionSlug: "fra1"},                   // name taken
		{Name: "x", RegionSlug: "fra1", IPRange: "10.120.8.0/24"},  // overlaps
		{Name: "x", RegionSlug: "fra1", IPRange: "8.8.8.0/24"},     // not RFC 1918
		{Name: "x", RegionSlug: "fra1", IPRange: "10.0.0.0/8"},     // too wide
		{Name: "x", RegionSlug: "nowhere"},                         // region
		{Name: "a b", RegionSlug: "fra1"},                          // name
		{Name: "x", RegionSlug: "fra1", IPRange: "10.200.0.1/24"},  // host bits
		{Name: "x", RegionSlug: "fra1", IPRange: "2001:db8::/64"},  // IPv6
		{Name: "x", RegionSlug: "fra1", IPRange: "192.168.0.0/29"}, // too narrow
		{Name: "x", RegionSlug: "fra1", IPRange: "172.32.0.0/16"},  // outside 172.16/12
		{Name: "x", RegionSlug: "fra1", IPRange: "10.114.0.0/24"},  // fra1's default
		{Name: "x", RegionSlug: "fra1", IPRange: "not-a-range"},    // syntax
		{Name: "", RegionSlug: "fra1"},                             // no name
		{Name: "x", RegionSlug: "ams2"},                            // unavailable region
		{Name: "x", RegionSlug: "fra1", IPRange: "10.120.0.0/16"},  // contains cloudml-ml
	} {
		if _, _, err := c.VPCs.Create(ctx, &bad); status(err) != 422 {
			t.Errorf("create vpc %+v: %v; want 422", bad, err)
		}
	}
}

func TestTags(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ctx := context.Background()
	tag, resp, err := c.Tags.Create(ctx, &godo.TagCreateRequest{Name: "cloudml-cluster:ml"})
	if err != nil || resp.StatusCode != 201 || tag.Name != "cloudml-cluster:ml" || tag.Resources.Count != 0 {
		t.Fatalf("create tag: %+v, %v", tag, err)
	}
	if _, _, err := c.Tags.Create(ctx, &godo.TagCreateRequest{Name: "cloudml:cluster=ml"}); status(err) != 422 {
		t.Errorf("invalid tag: %v; want 422", err)
	}
	d, _, err := c.Droplets.Create(ctx, createReq("n"))
	if err != nil {
		t.Fatal(err)
	}
	res := &godo.TagResourcesRequest{Resources: []godo.Resource{{ID: strconv.Itoa(d.ID), Type: godo.DropletResourceType}}}
	if resp, err := c.Tags.TagResources(ctx, "cloudml-cluster:ml", res); err != nil || resp.StatusCode != 204 {
		t.Fatalf("tag resources: %v", err)
	}
	if found, _, _ := c.Droplets.ListByTag(ctx, "cloudml-cluster:ml", nil); len(found) != 1 || found[0].ID != d.ID {
		t.Errorf("list by the tag just added: %d droplets", len(found))
	}
	tag, _, err = c.Tags.Get(ctx, "cloudml-cluster:ml")
	if err != nil || tag.Resources.Count != 1 || tag.Resources.Droplets.Count != 1 || tag.Resources.Droplets.LastTaggedURI == "" {
		t.Errorf("get tag: %+v, %v", tag.Resources, err)
	}
	if _, err := c.Tags.UntagResources(ctx, "cloudml-cluster:ml", &godo.UntagResourcesRequest{Resources: res.Resources}); err != nil {
		t.Fatalf("untag: %v", err)
	}
	if found, _, _ := c.Droplets.ListByTag(ctx, "cloudml-cluster:ml", nil); len(found) != 0 {
		t.Errorf("list by the tag just removed: %d droplets", len(found))
	}
	if _, err := c.Tags.TagResources(ctx, "unknown-tag", res); status(err) != 404 {
		t.Errorf("tag resources with an unknown tag: %v; want 404", err)
	}
	missing := &godo.TagResourcesRequest{Resources: []godo.Resource{{ID: "1", Type: godo.DropletResourceType}}}
	if _, err := c.Tags.TagResources(ctx, "cloudml-cluster:ml", missing); status(err) != 404 {
		t.Errorf("tag an unknown droplet: %v; want 404", err)
	}
	if _, _, err := c.Tags.Get(ctx, "unknown-tag"); status(err) != 404 {
		t.Errorf("get unknown tag: %v; want 404", err)
	}
	// A create's tags exist afterwards.
	if _, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-req:r9")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Tags.Get(ctx, "cloudml-req:r9"); err != nil {
		t.Errorf("tag of a create: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := dofake.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mod := range map[string]func(*dofake.Config){
		"no addr":           func(c *dofake.Config) { c.Addr = "" },
		"no token":          func(c *dofake.Config) { c.Token = "" },
		"negative delay":    func(c *dofake.Config) { c.ActiveDelay = -1 },
		"no droplets":       func(c *dofake.Config) { c.DropletLimit = 0 },
		"no rate":           func(c *dofake.Config) { c.RateLimit = 0 },
		"no sizes":          func(c *dofake.Config) { c.Sizes = nil },
		"ipv6 pool":         func(c *dofake.Config) { c.PublicPrefix = netip.MustParsePrefix("2001:db8::/64") },
		"size in no region": func(c *dofake.Config) { c.Sizes[0].Regions = []string{"mars1"} },
		"repeated region":   func(c *dofake.Config) { c.Regions = append(c.Regions, c.Regions[0]) },
		"image without id":  func(c *dofake.Config) { c.Images[0].ID = 0 },
		"key without fp":    func(c *dofake.Config) { c.SSHKeys = []dofake.SSHKey{{ID: 1}} },
	} {
		cfg := dofake.DefaultConfig()
		mod(&cfg)
		if err := cfg.Validate(); !errors.Is(err, dofake.ErrInvalidConfig) {
			t.Errorf("%s: %v; want ErrInvalidConfig", name, err)
		}
		if _, err := dofake.Start(cfg); err == nil {
			t.Errorf("%s: Start accepted it", name)
		}
	}
}
