// Package coordtest runs a real coordinator in the test process, served
// over TLS on an in-memory listener, for the tests of its peers (agents,
// the client): one place that knows how to start it, reach it as admin and
// mint join tokens.
package coordtest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// Coordinator is a coordinator served in process.
type Coordinator struct {
	*coordinator.Coordinator
	t   testing.TB
	lis *bufconn.Listener
	// Config is the configuration it runs with.
	Config coordinator.Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start serves a coordinator with a fresh state directory (or
// cfg.StateDir, when an option sets it) until Stop or the end of the test.
// Options adjust the configuration; by default it has provider "none", a
// file:// bucket beside the state and the admin credential in the state
// directory.
func Start(t testing.TB, opts ...func(*coordinator.Config)) *Coordinator {
	t.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Provider = coordinator.ProviderNone
	cfg.Logger = testutil.Logger(t).Named("coordinator")
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.DefaultBucket == "" {
		cfg.DefaultBucket = "file://" + filepath.Join(filepath.Dir(cfg.StateDir), "bucket")
	}
	if cfg.AdminConfig == "" {
		cfg.AdminConfig = filepath.Join(cfg.StateDir, "admin.config")
	}
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatalf("coordinator.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &Coordinator{Coordinator: c, t: t, lis: bufconn.Listen(1 << 20), Config: cfg, cancel: cancel}
	tc.wg.Add(1)
	go func() {
		defer tc.wg.Done()
		if err := c.Serve(ctx, tc.lis); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("coordinator serve: %v", err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(cfg.AdminConfig); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator wrote no admin credential at %s", cfg.AdminConfig)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(tc.Stop)
	return tc
}

// Stop stops serving and closes the store; safe to call twice.
func (c *Coordinator) Stop() {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
		if err := c.Close(); err != nil {
			c.t.Errorf("close coordinator: %v", err)
		}
	})
}

// Dialer reaches the in-memory listener; pair it with TLS credentials.
func (c *Coordinator) Dialer() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return c.lis.DialContext(ctx) })
}

// Addr is the target to dial with Dialer.
const Addr = "passthrough:///bufnet"

// AdminCredential is the admin credential the coordinator wrote.
func (c *Coordinator) AdminCredential() *pki.Credential {
	c.t.Helper()
	cred, err := pki.LoadCredential(c.Config.AdminConfig)
	if err != nil {
		c.t.Fatalf("admin credential: %v", err)
	}
	return cred
}

// AdminCreds are the admin's transport credentials.
func (c *Coordinator) AdminCreds() credentials.TransportCredentials {
	c.t.Helper()
	cfg, err := c.AdminCredential().TLS()
	if err != nil {
		c.t.Fatal(err)
	}
	return credentials.NewTLS(cfg)
}

// Dial connects with creds; the connection closes with the test.
func (c *Coordinator) Dial(creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	c.t.Helper()
	cc, err := grpc.NewClient(Addr, append([]grpc.DialOption{c.Dialer(), grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// AdminConn connects as the admin.
func (c *Coordinator) AdminConn() *grpc.ClientConn {
	c.t.Helper()
	return c.Dial(c.AdminCreds(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// Token mints a single-use join token, as a provider does.
func (c *Coordinator) Token() string {
	c.t.Helper()
	tok, err := c.MintToken("test", 0, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// NoCertCreds trust the coordinator's CA and present no certificate: an
// agent before it registered.
func (c *Coordinator) NoCertCreds() credentials.TransportCredentials {
	cred := c.AdminCredential()
	cred.Cert, cred.Key = "", ""
	pool, err := caPool(cred.CA)
	if err != nil {
		c.t.Fatal(err)
	}
	return credentials.NewTLS(pki.ClientTLS(pool, nil))
}

// CertCreds trust the coordinator's CA and present pair.
func (c *Coordinator) CertCreds(pair *tls.Certificate) credentials.TransportCredentials {
	pool, err := caPool(c.AdminCredential().CA)
	if err != nil {
		c.t.Fatal(err)
	}
	return credentials.NewTLS(pki.ClientTLS(pool, func() *tls.Certificate { return pair }))
}
