package agent

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// How the agent authenticates to gs:// buckets (Config.BucketAuth).
const (
	// BucketAuthDefault uses the machine's Application Default Credentials.
	BucketAuthDefault = "default"
	// BucketAuthCoordinator uses short-lived tokens the coordinator lends
	// on the node's mTLS connection (BucketToken), one per bucket; nothing
	// is stored on the machine. For machines with no Google credential,
	// such as droplets.
	BucketAuthCoordinator = "coordinator"
)

// tokenEarly is how long before a lent token expires the agent asks for
// the next one, so no request goes out with a token about to lapse.
const tokenEarly = time.Minute

// noExpiryLife is how long a lent token that names no expiry is used.
const noExpiryLife = 5 * time.Minute

// bucketTokenCaller is the one call lent tokens need (nodeConn in the
// agent, a fake in tests).
type bucketTokenCaller interface {
	BucketToken(ctx context.Context, in *cloudmlv1.BucketTokenRequest, opts ...grpc.CallOption) (*cloudmlv1.BucketTokenResponse, error)
}

// lentTokens asks the coordinator for a token for one bucket.
type lentTokens struct {
	c       bucketTokenCaller
	bucket  string
	timeout time.Duration
}

// Token implements oauth2.TokenSource.
func (l *lentTokens) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	resp, err := l.c.BucketToken(ctx, &cloudmlv1.BucketTokenRequest{Bucket: l.bucket})
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("no token for gs://%s from the coordinator (--bucket-auth coordinator): %s: %s", l.bucket, st.Code(), st.Message())
	}
	exp := time.Now().Add(noExpiryLife)
	if resp.GetExpireTime() != nil {
		exp = resp.GetExpireTime().AsTime()
	}
	return &oauth2.Token{AccessToken: resp.GetAccessToken(), TokenType: "Bearer", Expiry: exp}, nil
}

// lentTokenSource is the token source of bucket's clients: the last lent
// token until it is within tokenEarly of its expiry, then a new one.
func lentTokenSource(c bucketTokenCaller, bucket string, timeout time.Duration) oauth2.TokenSource {
	return oauth2.ReuseTokenSourceWithExpiry(nil, &lentTokens{c: c, bucket: bucket, timeout: timeout}, tokenEarly)
}

// bucketOptions is how the agent opens buckets for cfg.BucketAuth, with
// lent tokens coming over c.
func bucketOptions(cfg Config, c bucketTokenCaller) bucket.Options {
	if cfg.BucketAuth == BucketAuthCoordinator {
		return bucket.Options{
			GCSTokens: func(name string) oauth2.TokenSource { return lentTokenSource(c, name, cfg.CallTimeout) },
			AuthHint:  "the agent uses tokens its coordinator lends (--bucket-auth coordinator): check the coordinator's Google credentials and their access to this bucket",
		}
	}
	return bucket.Options{AuthHint: "the agent uses this machine's application default credentials (--bucket-auth default); on a machine with none, such as a droplet, start it with --bucket-auth coordinator"}
}

// BucketToken implements bucketTokenCaller on the current connection.
func (n *nodeConn) BucketToken(ctx context.Context, in *cloudmlv1.BucketTokenRequest, opts ...grpc.CallOption) (*cloudmlv1.BucketTokenResponse, error) {
	c := n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.BucketToken(ctx, in, opts...)
}
