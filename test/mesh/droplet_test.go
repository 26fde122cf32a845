package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/agent"
	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// dropletMetadata serves the metadata of droplet id, named name, with the
// private address addr.
func dropletMetadata(t *testing.T, id, name, addr string) string {
	t.Helper()
	values := map[string]string{"id": id, "hostname": name, "interfaces/private/0/ipv4/address": addr}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := values[strings.TrimPrefix(r.URL.Path, "/metadata/v1/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, v)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata/v1"
}

// TestDropletProvesWhichDropletItIs: a real agent reads its droplet id
// from the metadata service and registers with it; the coordinator's
// VerifyNode refuses a droplet that is not the cluster's (the agent stops
// with ErrBadToken, no node is made, the token stays unused), and accepts
// the right one with the same token, which then reports the droplet's
// name and private address.
func TestDropletProvesWhichDropletItIs(t *testing.T) {
	dir := t.TempDir()
	cluster, err := inproc.Start(inproc.Config{Dir: dir, Logger: testutil.Logger(t), Coordinator: func(cfg *coordinator.Config) {
		cfg.VerifyNode = func(_ context.Context, c coordinator.NodeClaim) error {
			if c.ProviderID != "3164494" {
				return fmt.Errorf("droplet %q does not carry this cluster's tags", c.ProviderID)
			}
			return nil
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Close(); err != nil {
			t.Error(err)
		}
	})
	tok, err := cluster.Token()
	if err != nil {
		t.Fatal(err)
	}
	run := func(metadataURL string) error {
		cfg := agent.Config{
			CoordinatorAddr: inproc.Target, JoinToken: tok, WorkDir: filepath.Join(t.TempDir(), "work"),
			MetadataURL: metadataURL, DialOptions: []grpc.DialOption{cluster.Dialer()}, Logger: testutil.Logger(t),
			BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		}
		a, err := agent.New(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		nodes := cloudmlv1.NewClusterServiceClient(adminConn(t, cluster))
		deadline := time.After(30 * time.Second)
		for {
			select {
			case err := <-done:
				return err
			case <-deadline:
				return errors.New("the agent neither registered nor stopped")
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := nodes.ListNodes(context.Background(), &cloudmlv1.ListNodesRequest{})
			if err == nil && len(resp.GetNodes()) > 0 {
				cancel()
				return <-done
			}
		}
	}

	err = run(dropletMetadata(t, "999", "impostor", "10.116.0.9"))
	if !errors.Is(err, agent.ErrBadToken) || !strings.Contains(err.Error(), "does not carry this cluster's tags") {
		t.Fatalf("agent on a foreign droplet: Run = %v, want ErrBadToken with the coordinator's reason", err)
	}
	if err := run(dropletMetadata(t, "3164494", "ml-pool-1", "10.116.0.2")); err != nil {
		t.Fatalf("agent on the cluster's droplet, same token: %v", err)
	}
	resp, err := cloudmlv1.NewClusterServiceClient(adminConn(t, cluster)).ListNodes(context.Background(), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetNodes(); len(n) != 1 || n[0].GetHostname() != "ml-pool-1" || n[0].GetAddress() != "10.116.0.2" {
		t.Errorf("nodes = %v, want the one droplet, named and addressed from its metadata", n)
	}
}

func adminConn(t *testing.T, c *inproc.Cluster) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(inproc.Target, c.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
