package dropletmeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// DefaultURL is the metadata service's base URL on every droplet.
const DefaultURL = "http://169.254.169.254/metadata/v1"

// maxBody bounds each answer; every value read is a short line.
const maxBody = 4 << 10

// requestTimeout bounds each request: the service answers at once on a
// droplet, and not at all elsewhere.
const requestTimeout = 5 * time.Second

// Droplet is what the metadata service says about this droplet.
type Droplet struct {
	// ID is the droplet id, in decimal.
	ID string
	// Hostname is the droplet's name.
	Hostname string
	// PrivateIPv4 is the address of its private (VPC) interface; empty if
	// it has none.
	PrivateIPv4 string
	// PublicIPv4 is the address of its public interface; empty if it has
	// none.
	PublicIPv4 string
}

// Address is the address the node should advertise to its peers: the
// private one when there is one, else the public one.
func (d Droplet) Address() string {
	if d.PrivateIPv4 != "" {
		return d.PrivateIPv4
	}
	return d.PublicIPv4
}

// ErrNotFound: the service has no such value (HTTP 404).
var ErrNotFound = errors.New("not in the droplet metadata")

// Client reads the metadata service at BaseURL.
type Client struct {
	// BaseURL is the service's base URL, such as DefaultURL.
	BaseURL string
	// HTTP is the client to use; nil means one that never goes through a
	// proxy (the service is link-local).
	HTTP *http.Client
}

// Lookup reads the droplet's id (required), hostname and addresses
// (optional: a 404 leaves them empty).
func (c *Client) Lookup(ctx context.Context) (Droplet, error) {
	var d Droplet
	id, err := c.get(ctx, "id")
	if err != nil {
		return Droplet{}, err
	}
	if !isDecimal(id) {
		return Droplet{}, fmt.Errorf("droplet metadata: id %q is not a droplet id", truncate(id))
	}
	d.ID = id
	for _, f := range []struct {
		path string
		dst  *string
		addr bool
	}{
		{"hostname", &d.Hostname, false},
		{"interfaces/private/0/ipv4/address", &d.PrivateIPv4, true},
		{"interfaces/public/0/ipv4/address", &d.PublicIPv4, true},
	} {
		v, err := c.get(ctx, f.path)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return Droplet{}, err
		}
		if f.addr {
			ip, err := netip.ParseAddr(v)
			if err != nil || !ip.Is4() {
				return Droplet{}, fmt.Errorf("droplet metadata: %s %q is not an IPv4 address", f.path, truncate(v))
			}
		}
		*f.dst = v
	}
	return d, nil
}

// get reads one value, trimmed.
func (c *Client) get(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	url := strings.TrimSuffix(c.BaseURL, "/") + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("droplet metadata: %w", err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = noProxy
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("droplet metadata: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return "", fmt.Errorf("droplet metadata: read %s: %w", url, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("%s: %w", url, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("droplet metadata: GET %s: %s", url, resp.Status)
	case len(body) > maxBody:
		return "", fmt.Errorf("droplet metadata: %s is larger than %d bytes", url, maxBody)
	}
	return strings.TrimSpace(string(body)), nil
}

// noProxy is the default client: the service is link-local, so a proxy
// from the environment must not see the request. A few requests per
// registration need no kept-alive connections.
var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func isDecimal(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
