package netns

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/internal/testutil"
)

// The real-system tests share one 3-node cluster, created on first use and
// closed after every test ran.
var shared struct {
	once    sync.Once
	c       *Cluster
	workDir string
	err     error
	created time.Duration
}

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	code := m.Run()
	if shared.c != nil {
		start := time.Now()
		if err := shared.c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "close shared cluster: %v\n", err)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "shared cluster: created in %s, closed in %s\n", shared.created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if left := Leftovers(context.Background(), shared.c.Name(), shared.workDir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "shared cluster left behind: %v\n", left)
			code = 1
		}
		os.RemoveAll(shared.workDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needSystem skips (or fails under CI) without root, docker.io and iproute2.
func needSystem(t *testing.T) {
	t.Helper()
	testutil.NeedSystem(t, "root, docker.io and iproute2", Check())
	testutil.Short(t)
}

// sharedCluster returns the package's 3-node cluster with a dockerd per node.
func sharedCluster(t *testing.T) *Cluster {
	t.Helper()
	needSystem(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "netns-test-")
		if err != nil {
			shared.err = err
			return
		}
		shared.workDir = dir
		cfg := DefaultConfig()
		cfg.Name = UniqueName("nt")
		cfg.WorkDir = dir
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "shared", Level: hclog.Info, Output: os.Stderr})
		start := time.Now()
		shared.c, shared.err = Create(context.Background(), cfg)
		shared.created = time.Since(start)
	})
	if shared.err != nil {
		t.Fatalf("create shared cluster: %v", shared.err)
	}
	return shared.c
}

// eventually polls f every 100ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}
