package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// authGCS is fake-gcs-server behind a front that, like Google, answers 401
// to every request whose "Authorization: Bearer" token is not the one
// valid for the bucket the request names; it counts the requests it let
// through by token.
type authGCS struct {
	*fakestorage.Server
	valid func(bucket, token string) bool

	mu     sync.Mutex
	passed map[string]int
}

// newAuthGCS starts it and points STORAGE_EMULATOR_HOST at it.
func newAuthGCS(t *testing.T, valid func(bucket, token string) bool) *authGCS {
	t.Helper()
	a := &authGCS{valid: valid, passed: map[string]int{}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !a.valid(bucketOfPath(r.URL.Path), tok) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":401,"message":"Request is missing required authentication credential."}}`)
			return
		}
		a.mu.Lock()
		a.passed[tok]++
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

// bucketOfPath is the bucket a JSON API path names (".../b/<bucket>/...").
func bucketOfPath(p string) string {
	_, rest, ok := strings.Cut(p, "/b/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func (a *authGCS) requests() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.passed {
		out[k] = v
	}
	return out
}

// lentFor is the token the fake coordinator lends for a bucket.
func lentFor(b string) string { return "lent-for-" + b }

// bucketJob puts a code archive and a data file in gs://code-bkt (with a
// setup token of its own) and returns an assignment that stages them and
// uploads to gs://out-bkt.
func bucketJob(t *testing.T) *cloudmlv1.Assignment {
	t.Helper()
	setup, err := bucket.OpenAtWith(context.Background(), bucket.Location{Scheme: "gs", Bucket: "code-bkt"}, bucket.Options{
		GCSTokens: func(string) oauth2.TokenSource { return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "setup"}) },
	})
	if err != nil {
		t.Fatalf("open the code bucket to set it up: %v", err)
	}
	defer setup.Close()
	code := packCode(t, setup, map[string]string{"train.sh": "#!/bin/sh\ncat data/d/x.csv\necho done > \"$CLOUDML_OUTPUT_DIR/out.txt\"\n"})
	if err := setup.Put(context.Background(), "data/x.csv", strings.NewReader("1,2\n"), true); err != nil {
		t.Fatal(err)
	}
	return &cloudmlv1.Assignment{
		Ref: ref("gsjob", 0, 1), TaskCount: 1, Command: []string{"./train.sh"}, Code: code,
		Data:   map[string]*cloudmlv1.Source{"d": {Url: "gs://code-bkt/data"}},
		Output: "gs://out-bkt/runs",
	}
}

// gcsWithBuckets is a front that takes each bucket's lent token (and
// "setup" for the test's own writes to code-bkt), with both buckets made.
func gcsWithBuckets(t *testing.T) *authGCS {
	gcs := newAuthGCS(t, func(b, tok string) bool {
		return tok == lentFor(b) || b == "code-bkt" && tok == "setup"
	})
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "code-bkt"})
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "out-bkt"})
	return gcs
}

// TestBucketAuthCoordinatorStagesAndUploads: an agent started with
// --bucket-auth coordinator and no Google credential stages code and data
// from a gs bucket and uploads results to another, every request carrying
// the token the coordinator lent for that very bucket.
func TestBucketAuthCoordinatorStagesAndUploads(t *testing.T) {
	gcs := gcsWithBuckets(t)
	f, dial := newFakeCoord(t)
	f.lend = func(b string) (*cloudmlv1.BucketTokenResponse, error) {
		return &cloudmlv1.BucketTokenResponse{AccessToken: lentFor(b), ExpireTime: timestamppb.New(time.Now().Add(time.Hour))}, nil
	}
	asg := bucketJob(t)
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.BucketAuth = BucketAuthCoordinator
	startAgent(t, cfg)
	f.assign(t, asg)
	end := f.waitFinal(t, asg.GetRef())
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end report = %v", end)
	}
	obj, err := gcs.GetObject("out-bkt", "runs/results/gsjob/0/1/out.txt")
	if err != nil || string(obj.Content) != "done\n" {
		t.Fatalf("uploaded out.txt = %q, %v; want %q", obj.Content, err, "done\n")
	}
	stdout, _, _ := f.logText(asg.GetRef())
	if stdout != "1,2\n" {
		t.Errorf("stdout = %q, want the staged data", stdout)
	}
	got := gcs.requests()
	if got[lentFor("code-bkt")] == 0 || got[lentFor("out-bkt")] == 0 {
		t.Errorf("requests by token = %v; want some with each lent token", got)
	}
	f.mu.Lock()
	lent := append([]string(nil), f.lent...)
	f.mu.Unlock()
	// Each bucket's client asks once: the token is good for an hour.
	if diff := cmp.Diff([]string{"node-1:code-bkt", "node-1:out-bkt"}, lent); diff != "" {
		t.Errorf("tokens asked for (-want +got):\n%s", diff)
	}
}

// TestBucketAuthDefaultFailsClearly: the same job with the default
// (Application Default Credentials, none here) fails, and its report says
// why and which flag to use.
func TestBucketAuthDefaultFailsClearly(t *testing.T) {
	gcsWithBuckets(t)
	f, dial := newFakeCoord(t)
	asg := bucketJob(t)
	startAgent(t, baseConfig(t, dial, t.TempDir()))
	f.assign(t, asg)
	end := f.waitFinal(t, asg.GetRef())
	if end.GetState() == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end report = %v; want a failure without credentials", end)
	}
	for _, want := range []string{`open bucket "code-bkt"`, "access refused", "--bucket-auth coordinator"} {
		if !strings.Contains(end.GetMessage(), want) {
			t.Errorf("report message %q lacks %q", end.GetMessage(), want)
		}
	}
}

// countingLender lends numbered tokens that live for life, and counts.
type countingLender struct {
	mu    sync.Mutex
	life  time.Duration
	n     int
	last  string
	calls []string
}

func (c *countingLender) BucketToken(_ context.Context, in *cloudmlv1.BucketTokenRequest, _ ...grpc.CallOption) (*cloudmlv1.BucketTokenResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.last = fmt.Sprintf("%s-%d", in.GetBucket(), c.n)
	c.calls = append(c.calls, in.GetBucket())
	return &cloudmlv1.BucketTokenResponse{AccessToken: c.last, ExpireTime: timestamppb.New(time.Now().Add(c.life))}, nil
}

func (c *countingLender) current() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.n
}

// TestLentTokensRefreshed: a token within tokenEarly of its expiry is
// replaced before the next request (each request then carries the newest
// one, which is all the front accepts); a token good for an hour is reused.
func TestLentTokensRefreshed(t *testing.T) {
	short := &countingLender{life: tokenEarly / 2}
	gcs := newAuthGCS(t, func(b, tok string) bool {
		last, _ := short.current()
		return b == "bkt" && tok == last
	})
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "bkt"})
	cfg := Config{BucketAuth: BucketAuthCoordinator, CallTimeout: 5 * time.Second}
	ctx := context.Background()
	b, err := bucket.OpenAtWith(ctx, bucket.Location{Scheme: "gs", Bucket: "bkt"}, bucketOptions(cfg, short))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer b.Close()
	for i := range 3 {
		if err := b.Put(ctx, fmt.Sprintf("k%d", i), strings.NewReader("x"), false); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	_, n := short.current()
	if n < 4 { // the open and three puts, each with a fresh token
		t.Errorf("%d tokens lent for 4 requests with short-lived tokens; want one each", n)
	}
	if got := gcs.requests(); len(got) < 4 {
		t.Errorf("requests by token = %v; want each request on a new token", got)
	}

	long := &countingLender{life: time.Hour}
	ts := lentTokenSource(long, "bkt", time.Second)
	for range 5 {
		if _, err := ts.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if _, n := long.current(); n != 1 {
		t.Errorf("%d tokens lent for 5 uses of an hour-long token, want 1", n)
	}
}

// TestBucketAuthCoordinatorWithoutCredentials: when the coordinator has
// no Google credential to lend, the task fails with its advice.
func TestBucketAuthCoordinatorWithoutCredentials(t *testing.T) {
	gcsWithBuckets(t)
	f, dial := newFakeCoord(t)
	f.lend = func(string) (*cloudmlv1.BucketTokenResponse, error) {
		return nil, status.Error(codes.FailedPrecondition, "no token for gs://code-bkt: the coordinator has no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS where it runs")
	}
	asg := bucketJob(t)
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.BucketAuth = BucketAuthCoordinator
	startAgent(t, cfg)
	f.assign(t, asg)
	end := f.waitFinal(t, asg.GetRef())
	if end.GetState() == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end report = %v; want a failure", end)
	}
	if !strings.Contains(end.GetMessage(), "set GOOGLE_APPLICATION_CREDENTIALS where it runs") {
		t.Errorf("report message %q lacks the coordinator's advice", end.GetMessage())
	}
}
