package dofake

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultToken is the API token DefaultConfig accepts.
const DefaultToken = "dop_v1_dofake0000000000000000000000000000000000000000000000000000"

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid dofake config")

// Config describes one test server.
type Config struct {
	// Addr is the API listener's address; the metadata service is served
	// there too. Default "127.0.0.1:0".
	Addr string
	// MetadataAddr, when set, is a second listener that serves only the
	// metadata service, answering for the droplet whose address the request
	// comes from (for example the bridge address of network-namespace
	// nodes).
	MetadataAddr string
	// Token is the one bearer token the API accepts.
	Token string
	// ActiveDelay is how long a droplet stays "new" (no networks) before it
	// boots and turns "active" with its addresses. Zero still answers the
	// create itself with "new".
	ActiveDelay time.Duration
	// DeleteLag is how long a deleted droplet stays visible (locked, its
	// status unchanged) after its DELETE answered 204; zero removes it at
	// once. Its machine is halted at the DELETE either way.
	DeleteLag time.Duration
	// DropletLimit is the account's droplet_limit: a create that would
	// pass it is refused with 422.
	DropletLimit int
	// RateLimit is the ratelimit-limit header (requests per hour).
	RateLimit int
	// EnforceRateLimit answers 429 once RateLimit requests were made in the
	// current hour; otherwise the headers only count down.
	EnforceRateLimit bool
	// Sizes, Regions and Images are the catalog (DefaultSizes,
	// DefaultRegions, DefaultImages).
	Sizes   []Size
	Regions []Region
	Images  []Image
	// SSHKeys are the account's keys; a create naming another is refused.
	SSHKeys []SSHKey
	// PublicPrefix is where droplets' public addresses come from when the
	// Booter supplies none. Default 198.18.0.0/15 (not routed anywhere).
	PublicPrefix netip.Prefix
	// Booter, when set, turns each droplet into a machine; nil: droplets
	// only exist in the API.
	Booter Booter
	// Logger receives the server's logs; nil discards them.
	Logger hclog.Logger
}

// DefaultConfig returns a server on a free loopback port with the default
// catalog, no delays and DefaultToken.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:0",
		Token:        DefaultToken,
		DropletLimit: 25,
		RateLimit:    5000,
		Sizes:        DefaultSizes(),
		Regions:      DefaultRegions(),
		Images:       DefaultImages(),
		PublicPrefix: netip.MustParsePrefix("198.18.0.0/15"),
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Addr == "":
		return bad("addr is empty")
	case c.Token == "":
		return bad("token is empty")
	case c.ActiveDelay < 0 || c.DeleteLag < 0:
		return bad("negative delay")
	case c.DropletLimit < 1:
		return bad("droplet limit %d < 1", c.DropletLimit)
	case c.RateLimit < 1:
		return bad("rate limit %d < 1", c.RateLimit)
	case len(c.Sizes) == 0 || len(c.Regions) == 0 || len(c.Images) == 0:
		return bad("sizes, regions and images must not be empty")
	case !c.PublicPrefix.IsValid() || !c.PublicPrefix.Addr().Is4() || c.PublicPrefix.Bits() > 30:
		return bad("public prefix %v is not an IPv4 prefix of /30 or wider", c.PublicPrefix)
	}
	regions := map[string]bool{}
	for _, r := range c.Regions {
		if r.Slug == "" || regions[r.Slug] {
			return bad("region slug %q empty or repeated", r.Slug)
		}
		regions[r.Slug] = true
	}
	sizes := map[string]bool{}
	for _, s := range c.Sizes {
		if s.Slug == "" || sizes[s.Slug] {
			return bad("size slug %q empty or repeated", s.Slug)
		}
		sizes[s.Slug] = true
		for _, r := range s.Regions {
			if !regions[r] {
				return bad("size %s names unknown region %s", s.Slug, r)
			}
		}
	}
	for _, im := range c.Images {
		if im.ID < 1 || im.Slug == "" {
			return bad("image %q needs an id and a slug", im.Name)
		}
	}
	for _, k := range c.SSHKeys {
		if k.ID < 1 || k.Fingerprint == "" {
			return bad("ssh key %q needs an id and a fingerprint", k.Name)
		}
	}
	return nil
}
