package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeMetadata serves a droplet's metadata; its first failures answers
// are 500s.
func fakeMetadata(t *testing.T, failures int32, values map[string]string) (url string, requests *atomic.Int32) {
	t.Helper()
	requests = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= failures {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		v, ok := values[strings.TrimPrefix(r.URL.Path, "/metadata/v1/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(v + "\n"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata/v1", requests
}

// registered waits for the first registration and returns its request,
// without the parts that change every run.
func registered(t *testing.T, f *fakeCoord) *cloudmlv1.RegisterRequest {
	t.Helper()
	f.wait(t, "a registration", func() bool { return len(f.registered) > 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	return &cloudmlv1.RegisterRequest{
		Hostname: f.registered[0].GetHostname(), Address: f.registered[0].GetAddress(), ProviderId: f.registered[0].GetProviderId(),
	}
}

func TestRegisterReportsDropletFromMetadata(t *testing.T) {
	f, dial := newFakeCoord(t)
	url, requests := fakeMetadata(t, 2, map[string]string{
		"id": "3164494", "hostname": "ml-pool-1",
		"interfaces/private/0/ipv4/address": "10.116.0.2", "interfaces/public/0/ipv4/address": "203.0.113.7",
	})
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.MetadataURL = url
	startAgent(t, cfg)
	want := &cloudmlv1.RegisterRequest{Hostname: "ml-pool-1", Address: "10.116.0.2", ProviderId: "3164494"}
	if diff := cmp.Diff(want, registered(t, f), protocmp.Transform()); diff != "" {
		t.Errorf("Register (-want +got):\n%s", diff)
	}
	if n := requests.Load(); n < 3 {
		t.Errorf("metadata requests = %d, want the two failures retried", n)
	}
}

func TestRegisterExplicitAddressWinsOverMetadata(t *testing.T) {
	f, dial := newFakeCoord(t)
	url, _ := fakeMetadata(t, 0, map[string]string{"id": "42", "hostname": "d", "interfaces/public/0/ipv4/address": "203.0.113.7"})
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.MetadataURL, cfg.Hostname, cfg.Address = url, "given", "192.0.2.9"
	startAgent(t, cfg)
	want := &cloudmlv1.RegisterRequest{Hostname: "given", Address: "192.0.2.9", ProviderId: "42"}
	if diff := cmp.Diff(want, registered(t, f), protocmp.Transform()); diff != "" {
		t.Errorf("Register (-want +got):\n%s", diff)
	}
}

func TestRegisterWithoutMetadataSendsNoProviderID(t *testing.T) {
	f, dial := newFakeCoord(t)
	startAgent(t, baseConfig(t, dial, t.TempDir()))
	got := registered(t, f)
	if got.GetProviderId() != "" || got.GetAddress() != "127.0.0.1" || got.GetHostname() == "" {
		t.Errorf("Register = %v, want no provider id and the default hostname and address", got)
	}
}

func TestMetadataURLMustBeHTTP(t *testing.T) {
	cfg := Config{CoordinatorAddr: "x:1", WorkDir: t.TempDir(), MetadataURL: "169.254.169.254/metadata/v1"}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "metadata URL") {
		t.Errorf("New with a metadata URL without scheme = %v, want a config error", err)
	}
}
