package dofake_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var errTest = errors.New("injected test failure")

func asError(err error, target **godo.ErrorResponse) bool { return errors.As(err, target) }

// start runs a server with DefaultConfig changed by mod, closed when the
// test ends.
func start(t *testing.T, mod func(*dofake.Config)) *dofake.Server {
	t.Helper()
	cfg := dofake.DefaultConfig()
	cfg.Logger = testutil.Logger(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := dofake.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// client returns a godo client of s as the provider builds one: an oauth2
// HTTP client, and with retries > 0 godo's retrying transport with waits
// of 1 to 10 ms (Retry-After still applies).
func client(t *testing.T, s *dofake.Server, retries int) *godo.Client {
	t.Helper()
	hc := oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s.Token()}))
	opts := []godo.ClientOpt{godo.SetBaseURL(s.URL())}
	if retries > 0 {
		opts = append(opts, godo.WithRetryAndBackoffs(godo.RetryConfig{
			RetryMax: retries, RetryWaitMin: godo.PtrTo(0.001), RetryWaitMax: godo.PtrTo(0.01),
		}))
	}
	c, err := godo.New(hc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.HTTPClient.CloseIdleConnections)
	return c
}

// status returns the HTTP status of a godo error, 0 if it carries none.
func status(err error) int {
	var er *godo.ErrorResponse
	if errors.As(err, &er) {
		return er.Response.StatusCode
	}
	return 0
}

// raw sends one request with token ("" for none) and returns the answer
// and its body.
func raw(t *testing.T, method, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// createReq is a valid single create tagged with tags.
func createReq(name string, tags ...string) *godo.DropletCreateRequest {
	return &godo.DropletCreateRequest{
		Name: name, Region: "fra1", Size: "s-2vcpu-4gb",
		Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}, Tags: tags,
	}
}

// waitActive polls droplet id until it is active, for at most 10 s.
func waitActive(t *testing.T, c *godo.Client, id int) *godo.Droplet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _, err := c.Droplets.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status == "active" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("droplet %d still %q after 10 s", id, d.Status)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}
