package coordinator

import (
	"context"
	"errors"

	"google.golang.org/grpc/peer"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Node verification. A join token proves that a machine got the token;
// on a cloud, the provider can also check which machine it is: the agent
// reports its id at the provider (RegisterRequest.provider_id, read from
// the cloud's metadata service), and Config.VerifyNode checks it, with the
// address the connection comes from, against the provider's API before
// the node gets a certificate. The token is checked first, so that only a
// holder of a valid token makes the coordinator call the provider, and
// again after the check, under the registration lock, so a single-use
// token still registers one node however many present it at once. The
// check runs outside every lock: an API call must not hold up the other
// registrations.

// maxProviderID bounds RegisterRequest.provider_id.
const maxProviderID = 128

// ErrVerifyUnavailable is what a VerifyNode hook wraps when it cannot
// decide now (its provider's API failed): the registration is answered
// UNAVAILABLE, which the agent retries, instead of UNAUTHENTICATED, which
// it does not.
var ErrVerifyUnavailable = errors.New("node verification unavailable")

// NodeClaim is what a registering machine says about itself, and where it
// connects from, as VerifyNode sees it.
type NodeClaim struct {
	// ProviderID is the machine's id at its provider as it reported it
	// (for DigitalOcean, the droplet id); empty if it reported none.
	ProviderID string
	// PeerAddr is the remote address of the connection, host:port.
	PeerAddr string
	// Hostname and Address are what the agent reported.
	Hostname, Address string
	// TokenID and TokenLabel name the join token it presented, which a
	// provider made for one machine it created.
	TokenID, TokenLabel string
}

// VerifyNodeFunc checks a registering machine before it gets a node
// certificate; a non-nil error refuses it (see Config.VerifyNode).
type VerifyNodeFunc func(ctx context.Context, claim NodeClaim) error

// verifyNode runs Config.VerifyNode, if any, for req, whose token (tokID,
// tokLabel) was found valid. A refusal is ErrUnauthenticated with the
// hook's reason, or ErrVerifyUnavailable's kind as the hook said.
func (c *Coordinator) verifyNode(ctx context.Context, req *cloudmlv1.RegisterRequest, tokID, tokLabel string) error {
	if c.cfg.VerifyNode == nil {
		return nil
	}
	claim := NodeClaim{
		ProviderID: req.GetProviderId(), Hostname: req.GetHostname(), Address: req.GetAddress(),
		TokenID: tokID, TokenLabel: tokLabel,
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		claim.PeerAddr = p.Addr.String()
	}
	err := c.cfg.VerifyNode(ctx, claim)
	if err == nil {
		return nil
	}
	log := c.log.With("provider_id", claim.ProviderID, "peer", claim.PeerAddr, "hostname", claim.Hostname, "token_id", tokID)
	if errors.Is(err, ErrVerifyUnavailable) {
		log.Warn("node verification unavailable; the agent will retry", "error", err)
		return errorf(ErrVerifyUnavailable, "register: the machine cannot be verified now; retry: %v", err)
	}
	log.Warn("node refused: verification failed", "error", err)
	return errorf(ErrUnauthenticated, "register: the machine failed verification: %v", err)
}
