package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google/downscope"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Bucket tokens. Agents on machines with no Google credential (droplets:
// user-data never holds a key) ask the coordinator, on their mTLS
// connection, for a short-lived access token to one gs:// bucket that a job
// uses. The coordinator's host holds the credential; nodes hold only tokens
// that expire within the hour, narrowed to that bucket.

// ErrNoGoogleCredentials is wrapped by a bucket token source that finds no
// Google credential where the coordinator runs; BucketToken then answers
// FAILED_PRECONDITION with its message.
var ErrNoGoogleCredentials = errors.New("the coordinator has no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS where it runs (or use its application default credentials: `gcloud auth application-default login`, a GCE service account)")

// storageObjectAdmin is the most a lent token may do in its bucket: read,
// write, list and delete objects; nothing on the bucket itself.
const storageObjectAdmin = "inRole:roles/storage.objectAdmin"

// lendEarly is how long before a narrowed token expires the coordinator
// makes the next one, so that a lent token always has more left than the
// agent's margin (a minute, agent/buckettoken.go) and is not asked for
// again at once.
const lendEarly = 3 * time.Minute

// stsTimeout bounds one token exchange with Google's STS.
const stsTimeout = 30 * time.Second

// bucketTokens lends tokens for buckets; it keeps one reusing source per
// bucket so that nodes asking often cost one exchange an hour.
type bucketTokens struct {
	root     oauth2.TokenSource // nil: nothing to lend
	unscoped bool
	sts      *http.Client

	mu      sync.Mutex // protects sources
	sources map[string]oauth2.TokenSource
}

func newBucketTokens(cfg Config) *bucketTokens {
	sts := cfg.STSClient
	if sts == nil {
		sts = &http.Client{Timeout: stsTimeout}
	}
	var root oauth2.TokenSource
	if cfg.BucketTokens != nil {
		root = oauth2.ReuseTokenSource(nil, cfg.BucketTokens)
	}
	return &bucketTokens{root: root, unscoped: cfg.BucketTokensUnscoped, sts: sts, sources: map[string]oauth2.TokenSource{}}
}

// source returns the token source for bucket name.
func (b *bucketTokens) source(name string) (oauth2.TokenSource, error) {
	if b.unscoped {
		return b.root, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ts, ok := b.sources[name]; ok {
		return ts, nil
	}
	// The exchange's HTTP client comes from this context (oauth2's
	// convention); it outlives any one call, since the source is kept.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, b.sts)
	ts, err := downscope.NewTokenSource(ctx, downscope.DownscopingConfig{
		RootSource: b.root,
		Rules: []downscope.AccessBoundaryRule{{
			AvailableResource:    "//storage.googleapis.com/projects/_/buckets/" + name,
			AvailablePermissions: []string{storageObjectAdmin},
		}},
	})
	if err != nil {
		return nil, err
	}
	ts = oauth2.ReuseTokenSourceWithExpiry(nil, ts, lendEarly)
	b.sources[name] = ts
	return ts, nil
}

// BucketToken lends the calling node a token for one bucket.
func (s *agentServer) BucketToken(ctx context.Context, req *cloudmlv1.BucketTokenRequest) (*cloudmlv1.BucketTokenResponse, error) {
	resp, err := s.c.bucketToken(ctx, req.GetBucket())
	return resp, toStatus(err)
}

func (c *Coordinator) bucketToken(ctx context.Context, name string) (*cloudmlv1.BucketTokenResponse, error) {
	node, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, err
	}
	if loc, err := bucket.Parse("gs://" + name); err != nil || loc.Bucket != name || loc.Key != "" {
		return nil, errorf(ErrInvalid, "bucket token: %q is not a gs bucket name", name)
	}
	if c.tokens.root == nil {
		return nil, errorf(ErrPrecondition, "no token for gs://%s: %v, and start it with --lend-bucket-tokens", name, ErrNoGoogleCredentials)
	}
	if !c.bucketInUse(name) {
		return nil, errorf(ErrPermissionDenied, "bucket token: no job of this coordinator uses gs://%s (nor is it the default bucket)", name)
	}
	// The root token first (it is reused): the downscoping exchange
	// flattens its error, which would hide ErrNoGoogleCredentials.
	if _, err := c.tokens.root.Token(); errors.Is(err, ErrNoGoogleCredentials) {
		return nil, errorf(ErrPrecondition, "no token for gs://%s: %v", name, err)
	} else if err != nil {
		return nil, errorf(ErrTokenUnavailable, "no token for gs://%s: the coordinator's credential: %v", name, err)
	}
	ts, err := c.tokens.source(name)
	if err != nil {
		return nil, fmt.Errorf("bucket token for gs://%s: %w", name, err)
	}
	tok, err := ts.Token()
	switch {
	case err != nil:
		// Google's token or STS endpoint failed: the agent retries.
		return nil, errorf(ErrTokenUnavailable, "no token for gs://%s: %v", name, err)
	case tok.AccessToken == "":
		return nil, errorf(ErrTokenUnavailable, "no token for gs://%s: the credential gave an empty token", name)
	}
	c.log.Debug("bucket token lent", "node_id", node, "bucket", name, "expires", tok.Expiry)
	resp := &cloudmlv1.BucketTokenResponse{AccessToken: tok.AccessToken}
	if !tok.Expiry.IsZero() {
		resp.ExpireTime = timestamppb.New(tok.Expiry)
	}
	return resp, nil
}

// bucketInUse reports whether gs bucket name is the default bucket or the
// code, data or output bucket of a job the coordinator holds.
func (c *Coordinator) bucketInUse(name string) bool {
	is := func(url string) bool {
		loc, err := bucket.Parse(url)
		return err == nil && loc.Scheme == "gs" && loc.Bucket == name
	}
	if is(c.cfg.DefaultBucket) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range c.jobs {
		if is(j.rec.Output) || is(j.spec.GetCode().GetUrl()) {
			return true
		}
		for _, src := range j.spec.GetData() {
			if is(src.GetUrl()) {
				return true
			}
		}
	}
	return false
}
