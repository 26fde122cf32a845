package agent

import (
	"context"
	"net/url"
	"os"

	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/dropletmeta"
)

// claims are what the node says about itself when it registers.
type claims struct {
	hostname, address, providerID string
}

// registrationClaims are the hostname and address to report and, with
// MetadataURL, the droplet id. The metadata service answers as soon as a
// droplet boots, so a failed lookup is retried with backoff rather than
// registering without the id, which the coordinator would refuse.
func (a *Agent) registrationClaims(ctx context.Context) (claims, error) {
	c := claims{hostname: a.cfg.Hostname, address: a.cfg.Address}
	if a.cfg.MetadataURL == "" {
		return c, nil
	}
	client := &dropletmeta.Client{BaseURL: a.cfg.MetadataURL}
	bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		d, err := client.Lookup(ctx)
		if err == nil {
			c.providerID = d.ID
			if c.hostname == "" {
				c.hostname = d.Hostname
			}
			if c.address == "" {
				c.address = d.Address()
			}
			break
		}
		a.log.Warn("droplet metadata lookup failed; will retry", "url", a.cfg.MetadataURL, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return claims{}, err
		}
	}
	if c.hostname == "" {
		c.hostname, _ = os.Hostname()
	}
	if c.address == "" {
		c.address = DefaultConfig().Address
	}
	a.log.Info("droplet metadata read", "droplet_id", c.providerID, "hostname", c.hostname, "address", c.address)
	return c, nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
