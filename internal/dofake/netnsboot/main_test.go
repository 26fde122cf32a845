package netnsboot_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/dofake/netnsboot"
	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pool is a Booter with a dofake server booting its droplets, and a godo
// client of the server.
type pool struct {
	b   *netnsboot.Booter
	s   *dofake.Server
	c   *godo.Client
	cfg netnsboot.Config
}

// startPool builds a pool of nodes and a dofake server whose metadata
// service the nodes reach at 169.254.169.254; everything is torn down
// when the test ends, and checked to leave nothing behind.
func startPool(t *testing.T, nodes int) *pool {
	t.Helper()
	needSystem(t)
	ctx := context.Background()
	cfg := netnsboot.DefaultConfig()
	cfg.Nodes = nodes
	cfg.WorkDir = t.TempDir()
	cfg.Logger = testutil.Logger(t)
	cfg.Console = testWriter{t}
	start := time.Now()
	b, err := netnsboot.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pool of %d nodes ready in %s", nodes, time.Since(start).Round(time.Millisecond))
	p := &pool{b: b, cfg: cfg}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close the pool: %v", err)
		}
		if left := netnsboot.Leftovers(context.Background(), cfg.Name, cfg.WorkDir); len(left) > 0 {
			t.Errorf("the pool left behind: %v", left)
		}
	})
	dcfg := dofake.DefaultConfig()
	dcfg.MetadataAddr = net.JoinHostPort(b.HostAddr(), "0")
	dcfg.Booter = b
	dcfg.Logger = testutil.Logger(t)
	s, err := dofake.Start(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close) // before the pool closes
	p.s = s
	if err := b.RouteMetadata(ctx, strings.TrimPrefix(s.MetadataURL(), "http://")); err != nil {
		t.Fatal(err)
	}
	hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s.Token()}))
	p.c, err = godo.New(hc, godo.SetBaseURL(s.URL()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.c.HTTPClient.CloseIdleConnections)
	return p
}

// needSystem skips (fails under CI) without what a pool needs.
func needSystem(t *testing.T) {
	t.Helper()
	testutil.NeedSystem(t, "root, docker.io, iproute2, iptables and curl", errors.Join(netns.Check(), lookPath("curl")))
	testutil.Short(t)
}

// create creates a droplet with userData and returns its id.
func (p *pool) create(t *testing.T, name, userData string) int {
	t.Helper()
	d, _, err := p.c.Droplets.Create(context.Background(), &godo.DropletCreateRequest{
		Name: name, Region: "fra1", Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"},
		UserData: userData, Tags: []string{"cloudml-cluster:test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d.ID
}

// active waits until droplet id is active and returns it.
func (p *pool) active(t *testing.T, id int) *godo.Droplet {
	t.Helper()
	var d *godo.Droplet
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "droplet active", func() error {
		var err error
		if d, _, err = p.c.Droplets.Get(context.Background(), id); err != nil {
			return err
		}
		if st := p.s.Stats(); st.BootFailures > 0 {
			t.Fatalf("%d boots failed (see the log)", st.BootFailures)
		}
		if d.Status != "active" {
			return errors.New("status " + d.Status)
		}
		return nil
	})
	return d
}

// delete deletes droplet id and waits until the API answers 404 and its
// node is free again.
func (p *pool) delete(t *testing.T, id int) {
	t.Helper()
	if _, err := p.c.Droplets.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, "droplet gone and halted", func() error {
		_, resp, err := p.c.Droplets.Get(context.Background(), id)
		if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
			return errors.New("the API still shows it")
		}
		if _, ok := p.b.Machine(id); ok {
			return errors.New("its machine still runs")
		}
		return nil
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
