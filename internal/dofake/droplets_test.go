package dofake_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/dofake"
)

// gate is a Booter that records boots and halts and lets each boot finish
// only when the test releases it with addresses.
type gate struct {
	mu      sync.Mutex
	booted  map[int]string // user-data by droplet id
	halted  map[int]int
	release chan dofake.Addresses
	fail    error
}

func newGate() *gate {
	return &gate{booted: map[int]string{}, halted: map[int]int{}, release: make(chan dofake.Addresses)}
}

func (g *gate) Boot(ctx context.Context, d dofake.Droplet, userData string) (dofake.Addresses, error) {
	g.mu.Lock()
	g.booted[d.ID] = userData
	g.mu.Unlock()
	if g.fail != nil {
		return dofake.Addresses{}, g.fail
	}
	select {
	case a := <-g.release:
		return a, nil
	case <-ctx.Done():
		return dofake.Addresses{}, ctx.Err()
	}
}

func (g *gate) Halt(_ context.Context, d dofake.Droplet) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.halted[d.ID]++
	return nil
}

// waitBooting waits until Boot was called for droplet id.
func waitBooting(t *testing.T, g *gate, id int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		_, ok := g.booted[id]
		g.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("droplet %d: no Boot call within 10s", id)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

func (g *gate) halts() map[int]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[int]int{}
	for k, v := range g.halted {
		out[k] = v
	}
	return out
}

func TestCreateBootsAndTurnsActive(t *testing.T) {
	g := newGate()
	key := dofake.SSHKey{ID: 41, Fingerprint: "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", Name: "ci", PublicKey: "ssh-ed25519 AAAAC3 ci@example"}
	s := start(t, func(c *dofake.Config) { c.Booter = g; c.SSHKeys = []dofake.SSHKey{key} })
	c := client(t, s, 0)
	ctx := context.Background()
	vpc, _, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "cloudml-ml", RegionSlug: "fra1", IPRange: "10.200.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	userData := "#cloud-config\nruncmd:\n  - echo hello\n"
	req := createReq("ml-n0", "cloudml-cluster:ml", "cloudml-pool:default")
	req.UserData, req.VPCUUID = userData, vpc.ID
	req.SSHKeys = []godo.DropletCreateSSHKey{{ID: 41}, {Fingerprint: key.Fingerprint}}
	d, resp, err := c.Droplets.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || d.Status != "new" || len(d.Networks.V4) != 0 {
		t.Fatalf("create: status %d, droplet %q with networks %v; want 202, new, none", resp.StatusCode, d.Status, d.Networks.V4)
	}
	if len(resp.Links.Actions) != 1 || resp.Links.Actions[0].Rel != "create" {
		t.Errorf("create links: %+v", resp.Links)
	}
	got := d.Status + " " + d.Name + " " + d.Region.Slug + " " + d.SizeSlug + " " + d.Size.Slug + " " + d.Image.Slug + " " + d.VPCUUID
	if want := "new ml-n0 fra1 s-2vcpu-4gb s-2vcpu-4gb ubuntu-24-04-x64 " + vpc.ID; got != want {
		t.Errorf("droplet: got %q, want %q", got, want)
	}
	if d.Memory != 4096 || d.Vcpus != 2 || d.Disk != 80 || d.Size.PriceHourly != 0.03571 {
		t.Errorf("droplet size: %d MiB %d vCPUs %d GB $%v/h", d.Memory, d.Vcpus, d.Disk, d.Size.PriceHourly)
	}
	if diff := cmp.Diff([]string{"cloudml-cluster:ml", "cloudml-pool:default"}, d.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if got, _, _ := c.Droplets.Get(ctx, d.ID); got.Status != "new" {
		t.Errorf("droplet is %q before its boot returned", got.Status)
	}

	g.release <- dofake.Addresses{Public: netip.MustParseAddr("203.0.113.10")}
	d = waitActive(t, c, d.ID)
	pub, _ := d.PublicIPv4()
	priv, _ := d.PrivateIPv4()
	if pub != "203.0.113.10" || !netip.MustParsePrefix("10.200.0.0/24").Contains(netip.MustParseAddr(priv)) {
		t.Errorf("active droplet: public %q private %q; want the booter's and one of the VPC", pub, priv)
	}
	g.mu.Lock()
	gotUD := g.booted[d.ID]
	g.mu.Unlock()
	if got := gotUD; got != userData {
		t.Errorf("booter got user-data %q, want %q", got, userData)
	}
	view, _ := s.Droplet(d.ID)
	if diff := cmp.Diff([]string{"41", key.Fingerprint}, view.SSHKeys); diff != "" {
		t.Errorf("ssh keys (-want +got):\n%s", diff)
	}
}

func TestDefaultAddressesAndVPC(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	d, _, err := c.Droplets.Create(context.Background(), createReq("a"))
	if err != nil {
		t.Fatal(err)
	}
	d = waitActive(t, c, d.ID)
	pub, _ := d.PublicIPv4()
	priv, _ := d.PrivateIPv4()
	vpc, _, err := c.VPCs.Get(context.Background(), d.VPCUUID)
	if err != nil {
		t.Fatal(err)
	}
	if !vpc.Default || vpc.RegionSlug != "fra1" || vpc.IPRange != "10.114.0.0/20" {
		t.Errorf("droplet without vpc_uuid is in %+v; want fra1's default", vpc)
	}
	if pub != "198.18.0.2" || priv != "10.114.0.2" {
		t.Errorf("addresses %s %s; want 198.18.0.2 10.114.0.2", pub, priv)
	}
	for _, n := range d.Networks.V4 {
		if n.Netmask == "" || n.Gateway == "" {
			t.Errorf("network without netmask or gateway: %+v", n)
		}
	}
}

func TestCreateMultiple(t *testing.T) {
	s := start(t, nil)
	c := client(t, s, 0)
	ds, resp, err := c.Droplets.CreateMultiple(context.Background(), &godo.DropletMultiCreateRequest{
		Names: []string{"n0", "n1", "n2"}, Region: "nyc1", Size: "c-8",
		Image: godo.DropletCreateImage{ID: 160000003}, Tags: []string{"req:1"}, UserData: "#!/bin/sh\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || len(ds) != 3 || len(resp.Links.Actions) != 3 {
		t.Fatalf("multi-create: status %d, %d droplets, %d actions", resp.StatusCode, len(ds), len(resp.Links.Actions))
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
		if d.Image.Slug != "debian-12-x64" || d.Vcpus != 8 {
			t.Errorf("droplet %s: image %s, %d vCPUs", d.Name, d.Image.Slug, d.Vcpus)
		}
		if ud, _ := s.UserData(d.ID); ud != "#!/bin/sh\n" {
			t.Errorf("droplet %s user-data %q", d.Name, ud)
		}
	}
	if diff := cmp.Diff([]string{"n0", "n1", "n2"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if ds[0].ID == ds[1].ID || ds[1].ID == ds[2].ID {
		t.Errorf("ids repeat: %d %d %d", ds[0].ID, ds[1].ID, ds[2].ID)
	}
}

func TestCreateRefusals(t *testing.T) {
	s := start(t, func(c *dofake.Config) { c.DropletLimit = 2 })
	c := client(t, s, 0)
	ctx := context.Background()
	other, _, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "other", RegionSlug: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*godo.DropletCreateRequest)
	}{
		{"tag with =", func(r *godo.DropletCreateRequest) { r.Tags = []string{"cloudml:cluster=ml"} }},
		{"tag with space", func(r *godo.DropletCreateRequest) { r.Tags = []string{"a b"} }},
		{"tag too long", func(r *godo.DropletCreateRequest) { r.Tags = []string{strings.Repeat("a", 256)} }},
		{"hostname", func(r *godo.DropletCreateRequest) { r.Name = "ml_n0" }},
		{"no name", func(r *godo.DropletCreateRequest) { r.Name = "" }},
		{"unknown region", func(r *godo.DropletCreateRequest) { r.Region = "mars1" }},
		{"unavailable region", func(r *godo.DropletCreateRequest) { r.Region = "ams2" }},
		{"unknown size", func(r *godo.DropletCreateRequest) { r.Size = "s-64vcpu-1tb" }},
		{"size not in region", func(r *godo.DropletCreateRequest) { r.Size = "gpu-h100x1-80gb" }},
		{"unknown image", func(r *godo.DropletCreateRequest) { r.Image = godo.DropletCreateImage{Slug: "windows-11"} }},
		{"unknown image id", func(r *godo.DropletCreateRequest) { r.Image = godo.DropletCreateImage{ID: 7} }},
		{"user-data over 64 KiB", func(r *godo.DropletCreateRequest) { r.UserData = strings.Repeat("x", 64<<10+1) }},
		{"unknown vpc", func(r *godo.DropletCreateRequest) { r.VPCUUID = "00000000-0000-4000-8000-000000000000" }},
		{"vpc of another region", func(r *godo.DropletCreateRequest) { r.VPCUUID = other.ID }},
		{"unknown ssh key", func(r *godo.DropletCreateRequest) { r.SSHKeys = []godo.DropletCreateSSHKey{{ID: 99}} }},
	} {
		req := createReq("ok")
		tc.mod(req)
		_, _, err := c.Droplets.Create(ctx, req)
		var er *godo.ErrorResponse
		if status(err) != 422 || !asError(err, &er) || er.Message == "" || er.RequestID == "" {
			t.Errorf("%s: got %v; want 422 with a message and a request id", tc.name, err)
		}
	}
	_, _, err = c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{
		Names: make([]string, 11), Region: "fra1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}})
	if status(err) != 422 {
		t.Errorf("11 names: %v; want 422", err)
	}
	if _, _, err := c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{
		Names: []string{"a", "b", "c"}, Region: "fra1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}}); status(err) != 422 {
		t.Errorf("3 droplets over a limit of 2: %v; want 422", err)
	}
	if st := s.Stats(); st.Created != 0 || st.Alive != 0 {
		t.Errorf("refused creates made droplets: %+v", st)
	}
}

func TestListByTagPages(t *testing.T) {
	s := start(t, func(c *dofake.Config) { c.DropletLimit = 1000 })
	c := client(t, s, 0)
	ctx := context.Background()
	for i := range 45 {
		tag := "pool:a"
		if i%3 == 2 {
			tag = "pool:b"
		}
		names := make([]string, 10)
		for j := range names {
			names[j] = "n"
		}
		if _, _, err := c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{
			Names: names, Region: "fra1", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"},
			Tags: []string{"cloudml-cluster:big", tag},
		}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(tag string, perPage int) (ids []int, pages, total int) {
		opt := &godo.ListOptions{PerPage: perPage}
		for {
			ds, resp, err := c.Droplets.ListByTag(ctx, tag, opt)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			total = resp.Meta.Total
			for _, d := range ds {
				ids = append(ids, d.ID)
			}
			if resp.Links == nil || resp.Links.IsLastPage() {
				return ids, pages, total
			}
			page, err := resp.Links.CurrentPage()
			if err != nil {
				t.Fatal(err)
			}
			opt.Page = page + 1
		}
	}
	for _, tc := range []struct {
		tag                string
		perPage            int
		want, pages, total int
	}{
		{"cloudml-cluster:big", 200, 450, 3, 450},
		{"pool:a", 200, 300, 2, 300},
		{"pool:b", 200, 150, 1, 150},
		{"pool:b", 0, 150, 8, 150},    // default per_page 20
		{"pool:a", 1000, 300, 2, 300}, // per_page capped at 200
		{"pool:none", 200, 0, 1, 0},
	} {
		ids, pages, total := list(tc.tag, tc.perPage)
		if len(ids) != tc.want || pages != tc.pages || total != tc.total {
			t.Errorf("tag %s per_page %d: %d droplets in %d pages, meta.total %d; want %d in %d, %d",
				tc.tag, tc.perPage, len(ids), pages, total, tc.want, tc.pages, tc.total)
		}
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("tag %s: ids not sorted or repeated", tc.tag)
		}
	}
	all, resp, err := c.Droplets.List(ctx, &godo.ListOptions{Page: 3, PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 50 || resp.Meta.Total != 450 || !resp.Links.IsLastPage() || resp.Links.Pages.Prev == "" {
		t.Errorf("last page of all: %d droplets, total %d, links %+v", len(all), resp.Meta.Total, resp.Links.Pages)
	}
	if byName, _, err := c.Droplets.ListByName(ctx, "n", &godo.ListOptions{PerPage: 1}); err != nil || len(byName) != 1 {
		t.Errorf("list by name: %d droplets, %v", len(byName), err)
	}
}

func TestDelete(t *testing.T) {
	g := newGate()
	s := start(t, func(c *dofake.Config) { c.Booter = g })
	c := client(t, s, 0)
	ctx := context.Background()
	var ids []int
	for i, tag := range []string{"req:1", "req:1", "req:2"} {
		d, _, err := c.Droplets.Create(ctx, createReq("n", "cloudml-cluster:ml", tag))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
		if i < 2 {
			g.release <- dofake.Addresses{}
			waitActive(t, c, d.ID)
		}
	}
	resp, err := c.Droplets.Delete(ctx, ids[0])
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("delete: %v, %v", resp, err)
	}
	if _, _, err := c.Droplets.Get(ctx, ids[0]); status(err) != 404 {
		t.Errorf("get after delete: %v; want 404", err)
	}
	if _, err := c.Droplets.Delete(ctx, ids[0]); status(err) != 404 {
		t.Errorf("second delete: %v; want 404", err)
	}
	if _, err := c.Droplets.Delete(ctx, 999); status(err) != 404 {
		t.Errorf("delete of an unknown id: %v; want 404", err)
	}
	// The third droplet is still booting: its delete cancels the boot.
	// Its boot must have begun, or it has no machine to halt.
	waitBooting(t, g, ids[2])
	if resp, err := c.Droplets.DeleteByTag(ctx, "cloudml-cluster:ml"); err != nil || resp.StatusCode != 204 {
		t.Fatalf("delete by tag: %v, %v", resp, err)
	}
	if left, _, err := c.Droplets.ListByTag(ctx, "cloudml-cluster:ml", nil); err != nil || len(left) != 0 {
		t.Errorf("after delete by tag: %d left, %v", len(left), err)
	}
	if resp, err := c.Droplets.DeleteByTag(ctx, "never-used"); err != nil || resp.StatusCode != 204 {
		t.Errorf("delete by an unused tag: %v, %v; want 204", resp, err)
	}
	if _, err := c.Droplets.DeleteByTag(ctx, "bad=tag"); status(err) != 422 {
		t.Errorf("delete by an invalid tag: %v; want 422", err)
	}
	st := s.Stats()
	if st.Created != 3 || st.Deleted != 3 || st.Alive != 0 {
		t.Errorf("stats %+v; want 3 created, 3 deleted, 0 alive", st)
	}
	s.Close() // waits for the halts
	if diff := cmp.Diff(map[int]int{ids[0]: 1, ids[1]: 1, ids[2]: 1}, g.halts()); diff != "" {
		t.Errorf("halts by droplet (-want +got):\n%s", diff)
	}
}

func TestDeleteLag(t *testing.T) {
	s := start(t, func(c *dofake.Config) { c.DeleteLag = time.Hour })
	c := client(t, s, 0)
	ctx := context.Background()
	d, _, err := c.Droplets.Create(ctx, createReq("n"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Droplets.Delete(ctx, d.ID); err != nil {
			t.Fatalf("delete of a droplet being deleted: %v; want 204", err)
		}
	}
	got, _, err := c.Droplets.Get(ctx, d.ID)
	if err != nil || !got.Locked {
		t.Fatalf("droplet right after its delete: %+v, %v; want it still shown, locked", got, err)
	}
	if st := s.Stats(); st.Deleted != 0 || st.Alive != 1 {
		t.Errorf("stats %+v; want 0 deleted, 1 alive", st)
	}

	short := start(t, func(c *dofake.Config) { c.DeleteLag = time.Millisecond })
	sc := client(t, short, 0)
	d, _, err = sc.Droplets.Create(ctx, createReq("n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Droplets.Delete(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, _, err := sc.Droplets.Get(ctx, d.ID)
		if status(err) == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("droplet still there 10 s after a delete with a 1 ms lag: %v", err)
		}
	}
}

func TestBootFailureStillHalts(t *testing.T) {
	g := newGate()
	g.fail = errTest
	s := start(t, func(c *dofake.Config) { c.Booter = g })
	c := client(t, s, 0)
	d, _, err := c.Droplets.Create(context.Background(), createReq("n"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Stats().BootFailures == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no boot failure counted")
		}
	}
	if got, _ := s.Droplet(d.ID); got.Status != "new" || got.PublicIPv4.IsValid() {
		t.Errorf("droplet whose boot failed: %+v; want new without addresses", got)
	}
	s.Close()
	if diff := cmp.Diff(map[int]int{d.ID: 1}, g.halts()); diff != "" {
		t.Errorf("halts (-want +got):\n%s", diff)
	}
}

func TestCloseHaltsBootingAndActive(t *testing.T) {
	g := newGate()
	s := start(t, func(c *dofake.Config) { c.Booter = g })
	c := client(t, s, 0)
	var ids []int
	for range 2 {
		d, _, err := c.Droplets.Create(context.Background(), createReq("n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	g.release <- dofake.Addresses{} // one boots, the other waits for ever
	s.Close()
	if diff := cmp.Diff(map[int]int{ids[0]: 1, ids[1]: 1}, g.halts()); diff != "" {
		t.Errorf("halts after Close (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.Alive != 2 || st.Deleted != 0 || st.BootFailures != 0 {
		t.Errorf("stats after Close: %+v; want 2 alive, none deleted, no boot failure", st)
	}
}
