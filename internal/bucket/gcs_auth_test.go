package bucket

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"golang.org/x/oauth2"
)

// authGCS is fake-gcs-server behind a front that, like Google, refuses
// every request without "Authorization: Bearer <want>" (401), and counts
// the requests it let through.
type authGCS struct {
	*fakestorage.Server
	want string

	mu     sync.Mutex
	passed int
}

// newAuthGCS starts it and points STORAGE_EMULATOR_HOST at it.
func newAuthGCS(t *testing.T, wantToken string) *authGCS {
	t.Helper()
	a := &authGCS{want: wantToken}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+a.want {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":401,"message":"Request is missing required authentication credential."}}`)
			return
		}
		a.mu.Lock()
		a.passed++
		a.mu.Unlock()
		a.HTTPHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, ExternalURL: front.URL})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	a.Server = srv
	u, _ := url.Parse(front.URL)
	t.Setenv("STORAGE_EMULATOR_HOST", u.Host)
	return a
}

func (a *authGCS) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.passed
}

// TestGCSTokensAreSent: with Options.GCSTokens every request of a gs
// bucket's client carries the bucket's token, so a bucket behind a front
// that demands it opens, takes an upload, lists and reads back, through a
// pool as the agent uses it.
func TestGCSTokensAreSent(t *testing.T) {
	gcs := newAuthGCS(t, "lent-token-for-private-bkt")
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "private-bkt"})
	var asked []string
	pool := NewPoolWith(Options{GCSTokens: func(bucket string) oauth2.TokenSource {
		asked = append(asked, bucket)
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "lent-token-for-" + bucket})
	}})
	defer pool.Close()
	ctx := context.Background()
	b, loc, err := pool.Open(ctx, "gs://private-bkt/runs")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	put(t, b, loc.Key+"/out.txt", "result")
	if got := readAll(t, b, loc.Key+"/out.txt"); got != "result" {
		t.Errorf("read back %q, want %q", got, "result")
	}
	if l, err := b.List(ctx, loc.Key+"/"); err != nil || len(l) != 1 {
		t.Errorf("List = %v, %v; want the one object", l, err)
	}
	if len(asked) != 1 || asked[0] != "private-bkt" {
		t.Errorf("token sources asked for %v, want [private-bkt] once", asked)
	}
	if n := gcs.requests(); n < 4 {
		t.Errorf("%d authorised requests reached the bucket, want at least 4 (open, put, read, list)", n)
	}
}

// TestGCSWithoutCredentialsSaysWhy: the default way (no token; against an
// emulator that means no credential at all) is refused by the same front,
// and the error says so with the caller's hint.
func TestGCSWithoutCredentialsSaysWhy(t *testing.T) {
	gcs := newAuthGCS(t, "lent-token")
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "private-bkt"})
	_, err := OpenAtWith(context.Background(), Location{Scheme: "gs", Bucket: "private-bkt"}, Options{AuthHint: "the agent uses application default credentials"})
	if err == nil {
		t.Fatal("Open without a token succeeded against a bucket that demands one")
	}
	for _, want := range []string{`open bucket "private-bkt"`, "access refused (the agent uses application default credentials)", "401"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := gcs.requests(); n != 0 {
		t.Errorf("%d requests got through without the token", n)
	}
}

func readAll(t *testing.T, b Bucket, key string) string {
	t.Helper()
	rc, err := b.NewReader(context.Background(), key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
