package agent

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/testutil"
)

// TestRegisterDoesNotWaitForDockerPing: the agent registers and opens its
// session while its first ping of the Docker daemon is still unanswered
// (the daemon here answers only once the session is open), and the ping
// then succeeds. An agent that pinged before registering would give up on
// the ping instead ("does not answer yet").
func TestRegisterDoesNotWaitForDockerPing(t *testing.T) {
	f, dial := newFakeCoord(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/_ping") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("API-Version", "1.41")
		w.Header().Set("OSType", "linux")
		io.WriteString(w, "OK")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("fake docker daemon: %v", err)
		}
	})

	logs := &testutil.SyncBuffer{}
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: logs})
	cfg.Docker = "unix://" + sock
	r := startAgent(t, cfg)
	f.wait(t, "a session while the daemon's first ping is unanswered", func() bool { return len(f.sessionReqs) == 1 })
	close(release)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, "the first ping answered", func() error {
		if !strings.Contains(logs.String(), "docker daemon found") {
			return errors.New("no \"docker daemon found\" in the agent's log")
		}
		return nil
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if log := logs.String(); strings.Contains(log, "does not answer yet") {
		t.Errorf("the first ping gave up:\n%s", log)
	}
}
