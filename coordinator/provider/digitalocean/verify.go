package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/coordinator"
)

// Node verification (part of what makes a droplet's registration safe).
// DigitalOcean gives droplets no signed identity document, so the
// coordinator checks what a registering machine claims against the API:
// the droplet id it read from its metadata service must be a droplet that
// exists, carries this cluster's tag, has the public or private address
// the connection comes from, and is the droplet its join token was minted
// for: the token's label (TokenLabel) names the cluster, the create
// request and the droplet's name, and the droplet must carry that
// request's tag and that name. So a token read from droplet A's user-data
// cannot register droplet B, nor a machine outside the cluster.

// ErrRefused is wrapped by VerifyNode's refusals.
var ErrRefused = errors.New("droplet refused")

const labelPrefix = "digitalocean"

// TokenLabel is the label of the join token minted for the droplet named
// name of create request in cluster.
func TokenLabel(cluster, request, name string) string {
	return fmt.Sprintf("%s cluster=%s request=%s droplet=%s", labelPrefix, cluster, request, name)
}

// parseLabel reads a TokenLabel.
func parseLabel(label string) (cluster, request, name string, ok bool) {
	f := strings.Fields(label)
	if len(f) != 4 || f[0] != labelPrefix {
		return "", "", "", false
	}
	vals := map[string]string{}
	for _, kv := range f[1:] {
		k, v, found := strings.Cut(kv, "=")
		if !found || v == "" {
			return "", "", "", false
		}
		vals[k] = v
	}
	cluster, request, name = vals["cluster"], vals["request"], vals["droplet"]
	return cluster, request, name, cluster != "" && request != "" && name != ""
}

// VerifyNode is the coordinator.VerifyNodeFunc of this provider's
// droplets (cmd/coordinator installs it as Config.VerifyNode). It refuses
// (ErrRefused) a claim whose droplet does not exist, is not this
// cluster's, does not have the connection's address, or is not the
// droplet the token was minted for; it answers
// coordinator.ErrVerifyUnavailable, which the agent retries, when the API
// fails or the droplet has no address yet.
func (p *Provider) VerifyNode(ctx context.Context, claim coordinator.NodeClaim) error {
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
	}
	id, err := strconv.Atoi(claim.ProviderID)
	if err != nil || id <= 0 {
		return refuse("it reported no droplet id (%q): is the agent reading the droplet metadata service?", claim.ProviderID)
	}
	cluster, request, name, ok := parseLabel(claim.TokenLabel)
	if !ok || cluster != p.cfg.Cluster {
		return refuse("its join token (%s, %q) was not minted for a droplet of cluster %s", claim.TokenID, claim.TokenLabel, p.cfg.Cluster)
	}
	ap, err := netip.ParseAddrPort(claim.PeerAddr)
	if err != nil {
		return refuse("no peer address to check (%q)", claim.PeerAddr)
	}
	peer := ap.Addr().Unmap()
	var d *godo.Droplet
	_, err = p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
		d, r, err = p.api.Droplets.Get(ctx, id)
		return r, err
	})
	switch {
	case statusOf(err) == http.StatusNotFound:
		return refuse("droplet %d does not exist", id)
	case err != nil:
		return fmt.Errorf("%w: %w", coordinator.ErrVerifyUnavailable, apiError(fmt.Sprintf("get droplet %d", id), err))
	case !slices.Contains(d.Tags, ClusterTag(p.cfg.Cluster)):
		return refuse("droplet %d (%s) is not tagged %s", id, d.Name, ClusterTag(p.cfg.Cluster))
	case d.Name != name || !slices.Contains(d.Tags, RequestTagPrefix+request):
		return refuse("droplet %d (%s) is not the droplet its join token %s was minted for (%s of request %s)", id, d.Name, claim.TokenID, name, request)
	}
	pub, priv := addrs(*d)
	switch {
	case !pub.IsValid() && !priv.IsValid():
		return fmt.Errorf("%w: droplet %d has no address yet (status %s)", coordinator.ErrVerifyUnavailable, id, d.Status)
	case peer != pub && peer != priv:
		return refuse("droplet %d (%s) has addresses %v and %v, but the connection comes from %s", id, d.Name, pub, priv, peer)
	}
	p.log.Info("droplet verified", "droplet", id, "name", d.Name, "peer", peer, "token_id", claim.TokenID)
	return nil
}
