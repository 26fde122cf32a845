package inproc

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// ServeTCP serves a coordinator (state, admin credential and a file://
// bucket in a temporary directory) on a TCP port of 127.0.0.1, which other
// processes and real TLS connections can reach, until the test ends. It
// returns the address and an admin client. adjust, if set, changes the
// configuration first; the node-down deadline is a minute, so that a
// loaded machine does not find a silent node.
func ServeTCP(t testing.TB, adjust func(*coordinator.Config)) (string, *client.Client) {
	t.Helper()
	dir := t.TempDir()
	cfg := coordinator.DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.AdminConfig = filepath.Join(dir, "admin.config")
	cfg.DefaultBucket = "file://" + filepath.Join(dir, "bucket")
	cfg.NodeDownAfter = time.Minute
	cfg.Logger = testutil.Logger(t).Named("coordinator")
	if adjust != nil {
		adjust(&cfg)
	}
	co, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- co.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	})
	var cred *pki.Credential
	for cred == nil {
		if cred, err = pki.LoadCredential(cfg.AdminConfig); err != nil {
			select {
			case err := <-served:
				t.Fatalf("the coordinator stopped before writing its credential: %v", err)
			case <-time.After(10 * time.Millisecond): // polling interval
			}
		}
	}
	ccfg, err := client.ConfigFromCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	ccfg.Address = lis.Addr().String()
	c, err := client.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return lis.Addr().String(), c
}
