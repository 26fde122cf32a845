package coordinator

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeSTS stands in for Google's STS: it records each token exchange and
// answers with a token named after the bucket the exchange's access
// boundary allows.
type fakeSTS struct {
	mu        sync.Mutex
	exchanges []url.Values
}

func (f *fakeSTS) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil || r.URL.String() != "https://sts.googleapis.com/v1/token" {
		return nil, fmt.Errorf("fake sts: unexpected request to %s: %v", r.URL, err)
	}
	f.mu.Lock()
	f.exchanges = append(f.exchanges, form)
	f.mu.Unlock()
	var opts struct {
		AccessBoundary struct {
			AccessBoundaryRules []struct {
				AvailableResource string `json:"availableResource"`
			} `json:"accessBoundaryRules"`
		} `json:"accessBoundary"`
	}
	_ = json.Unmarshal([]byte(form.Get("options")), &opts)
	res := ""
	if rules := opts.AccessBoundary.AccessBoundaryRules; len(rules) == 1 {
		res = rules[0].AvailableResource
	}
	res = res[strings.LastIndex(res, "/")+1:]
	out, _ := json.Marshal(map[string]any{"access_token": "downscoped-" + res, "token_type": "Bearer", "expires_in": 3600,
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(out)), Request: r}, nil
}

func (f *fakeSTS) calls() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.exchanges...)
}

// rootToken is the coordinator's own credential in these tests.
var rootToken = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "root-token", Expiry: time.Now().Add(time.Hour)})

// bucketJob is a job whose code, data and output are in three gs buckets.
func bucketJob() *cloudmlv1.JobSpec {
	spec := gridSpec("bucketed", 1)
	spec.Code = &cloudmlv1.Source{Url: "gs://code-bkt/code.tar.gz", Digest: "sha256:00"}
	spec.Data = map[string]*cloudmlv1.Source{"train": {Url: "gs://data-bkt/train/"}}
	spec.Output = "gs://out-bkt/runs"
	return spec
}

// TestBucketTokenForAJobsBucket: a node gets, for each bucket a job uses,
// a token narrowed to that bucket alone (the exchange carries the
// coordinator's token and a boundary of objectAdmin on that bucket), and
// asking again reuses it.
func TestBucketTokenForAJobsBucket(t *testing.T) {
	sts := &fakeSTS{}
	h := start(t, "", func(c *Config) {
		c.BucketTokens = rootToken
		c.STSClient = &http.Client{Transport: sts}
		c.DefaultBucket = "gs://default-bkt/cloudml"
	})
	h.submit(bucketJob())
	node := newAgent(t, h, 1)
	for _, b := range []string{"code-bkt", "data-bkt", "out-bkt", "default-bkt"} {
		resp, err := node.client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: b})
		if err != nil {
			t.Fatalf("BucketToken(%s): %v", b, err)
		}
		if got, want := resp.GetAccessToken(), "downscoped-"+b; got != want {
			t.Errorf("token for %s = %q, want %q", b, got, want)
		}
		if left := time.Until(resp.GetExpireTime().AsTime()); left < 50*time.Minute || left > time.Hour {
			t.Errorf("token for %s expires in %s, want about an hour", b, left)
		}
	}
	if _, err := node.client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "out-bkt"}); err != nil {
		t.Fatalf("BucketToken again: %v", err)
	}
	calls := sts.calls()
	if len(calls) != 4 {
		t.Fatalf("%d exchanges, want 4 (one per bucket; the second ask reuses the token)", len(calls))
	}
	form := calls[2]
	if got := form.Get("subject_token"); got != "root-token" {
		t.Errorf("exchange subject token = %q, want the coordinator's", got)
	}
	for _, want := range []string{`"availableResource":"//storage.googleapis.com/projects/_/buckets/out-bkt"`, `"inRole:roles/storage.objectAdmin"`} {
		if !strings.Contains(form.Get("options"), want) {
			t.Errorf("exchange options %s lack %s", form.Get("options"), want)
		}
	}
}

// TestBucketTokenRefusesAnUnknownBucket: a bucket no job uses gets no
// token, and Google is not even asked.
func TestBucketTokenRefusesAnUnknownBucket(t *testing.T) {
	sts := &fakeSTS{}
	h := start(t, "", func(c *Config) {
		c.BucketTokens = rootToken
		c.STSClient = &http.Client{Transport: sts}
	})
	h.submit(bucketJob())
	node := newAgent(t, h, 1)
	_, err := node.client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "someone-elses-bkt"})
	wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(status.Convert(err).Message(), "no job of this coordinator uses gs://someone-elses-bkt") {
		t.Errorf("message %q does not say why", status.Convert(err).Message())
	}
	_, err = node.client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "out-bkt/../x"})
	wantCode(t, err, codes.InvalidArgument)
	if n := len(sts.calls()); n != 0 {
		t.Errorf("%d exchanges for refused buckets, want 0", n)
	}
}

// TestBucketTokenRefusesAClient: only nodes borrow tokens; a client's
// credential, even the admin's, is refused before the handler.
func TestBucketTokenRefusesAClient(t *testing.T) {
	h := start(t, "", func(c *Config) {
		c.BucketTokens = rootToken
		c.BucketTokensUnscoped = true
	})
	h.submit(bucketJob())
	client := h.newCredential(t, "alice", false)
	cc := h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), func() *tls.Certificate { return client })))
	for name, conn := range map[string]*grpc.ClientConn{"client": cc, "admin": h.conn} {
		_, err := cloudmlv1.NewAgentServiceClient(conn).BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "out-bkt"})
		if got := status.Code(err); got != codes.PermissionDenied {
			t.Errorf("BucketToken as %s: %v, want PermissionDenied", name, err)
		}
	}
	// The node, on the same coordinator, gets the unscoped token.
	resp, err := newAgent(t, h, 1).client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "out-bkt"})
	if err != nil || resp.GetAccessToken() != "root-token" {
		t.Fatalf("BucketToken as the node: %v, %v; want the root token", resp, err)
	}
}

// TestBucketTokenWithoutCredentials: a coordinator with no credential, or
// one whose source finds none, answers FAILED_PRECONDITION saying what to
// do where it runs.
func TestBucketTokenWithoutCredentials(t *testing.T) {
	none := oauth2.TokenSource(nil)
	missing := tokenFunc(func() (*oauth2.Token, error) {
		return nil, fmt.Errorf("find default credentials: %w", ErrNoGoogleCredentials)
	})
	for name, src := range map[string]oauth2.TokenSource{"no source": none, "source finds none": missing} {
		t.Run(name, func(t *testing.T) {
			h := start(t, "", func(c *Config) {
				c.BucketTokens = src
				c.STSClient = &http.Client{Transport: &fakeSTS{}}
			})
			h.submit(bucketJob())
			node := newAgent(t, h, 1)
			_, err := node.client.BucketToken(ctxT(t), &cloudmlv1.BucketTokenRequest{Bucket: "out-bkt"})
			wantCode(t, err, codes.FailedPrecondition)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "set GOOGLE_APPLICATION_CREDENTIALS where it runs") {
				t.Errorf("message %q does not say what to do", msg)
			}
		})
	}
}

// tokenFunc is a TokenSource from a function.
type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }
