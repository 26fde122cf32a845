package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// Name is the provider's registry name.
const Name = "digitalocean"

// Sentinel errors.
var (
	// ErrAPI is wrapped by errors of the DigitalOcean API (after retries).
	ErrAPI = errors.New("digitalocean API")
	// ErrCostLimit is a create refused by the cost guard
	// (Config.MaxHourlyCost); it also wraps provider.ErrCapacity.
	ErrCostLimit = errors.New("over the hourly cost limit")
)

// Provider makes the cluster's nodes as DigitalOcean droplets that boot
// the agent from cloud-init user-data. Its methods are safe for
// concurrent use.
type Provider struct {
	cfg Config
	log hclog.Logger
	api *godo.Client // retries 429, 5xx and lost connections (godo's transport)
	// once sends creates: it never retries, since a lost create response
	// plus a blind retry makes a second droplet; Create retries itself
	// after listing by the request's tag.
	once       *godo.Client
	transports []*http.Transport // api's and once's
	vpcMu      sync.Mutex        // serializes finding or making the VPC
	fwMu       sync.Mutex        // serializes finding or making the firewall

	mu       sync.Mutex // protects everything below
	started  bool
	closed   bool
	target   provider.Target
	sizes    map[string]godo.Size      // slug → size, from Start
	vpc      string                    // the VPC uuid droplets join, once known
	vpcRange string                    // its ip_range, once known
	firewall string                    // the cluster's firewall id, once found or made
	deleting map[int]bool              // droplets a Delete is under way for
	inflight map[*reservation]struct{} // creates under way, for the cost guard
}

var _ provider.Provider = (*Provider)(nil)

// New returns a provider for cfg; it calls no API until Start.
func New(cfg Config, log hclog.Logger) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cfg.SSHKeys = slices.Clone(cfg.SSHKeys)
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.Token})
	ua := godo.SetUserAgent("cloudml")
	var opts []godo.ClientOpt
	opts = append(opts, godo.SetBaseURL(cfg.APIURL), ua)
	if cfg.Retry.Max > 0 {
		opts = append(opts, godo.WithRetryAndBackoffs(godo.RetryConfig{
			RetryMax:     cfg.Retry.Max,
			RetryWaitMin: godo.PtrTo(cfg.Retry.WaitMin.Seconds()),
			RetryWaitMax: godo.PtrTo(cfg.Retry.WaitMax.Seconds()),
			Logger:       log.Named("api"), // an hclog.Logger is a retryablehttp.LeveledLogger
		}))
	}
	// Both clients get transports of their own, which Close can close: a
	// pooled connection outlives the provider otherwise. godo's retrying
	// transport replaces the client given, keeping only its token source,
	// so its own transport is swapped for ours.
	apiTr := http.DefaultTransport.(*http.Transport).Clone()
	api, err := godo.New(&http.Client{Transport: &oauth2.Transport{Source: ts, Base: apiTr}}, opts...)
	if err != nil {
		return nil, fmt.Errorf("digitalocean client: %w", err)
	}
	if ot, ok := api.HTTPClient.Transport.(*oauth2.Transport); ok {
		if rt, ok := ot.Base.(*retryablehttp.RoundTripper); ok && rt.Client != nil {
			rt.Client.HTTPClient.Transport = apiTr
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	once, err := godo.New(&http.Client{Transport: &oauth2.Transport{Source: ts, Base: tr}}, godo.SetBaseURL(cfg.APIURL), ua)
	if err != nil {
		return nil, fmt.Errorf("digitalocean client: %w", err)
	}
	return &Provider{
		cfg: cfg, log: log, api: api, once: once, transports: []*http.Transport{apiTr, tr},
		vpc: cfg.VPC, deleting: map[int]bool{}, inflight: map[*reservation]struct{}{},
	}, nil
}

// Name returns "digitalocean".
func (p *Provider) Name() string { return Name }

// Config returns the provider's configuration, its token blanked.
func (p *Provider) Config() Config {
	c := p.cfg
	c.Token = ""
	c.SSHKeys = slices.Clone(c.SSHKeys)
	return c
}

// Start checks what droplets will need: a reachable advertise address and
// the agent download in t, a token the API accepts, an available region,
// the default size offered there, and the VPC if one was given. It makes
// nothing.
func (p *Provider) Start(ctx context.Context, t provider.Target) error {
	if err := checkTarget(t); err != nil {
		return err
	}
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return errors.New("digitalocean provider started twice")
	}
	p.mu.Unlock()

	acct, err := p.account(ctx)
	if err != nil {
		return err
	}
	if err := p.checkRegion(ctx); err != nil {
		return err
	}
	sizes, err := p.listSizes(ctx)
	if err != nil {
		return err
	}
	if _, err := sizeIn(sizes, p.cfg.Size, p.cfg.Region); err != nil {
		return err
	}
	if p.cfg.VPC != "" {
		if err := p.checkVPC(ctx, p.cfg.VPC); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return errors.New("digitalocean provider started twice")
	}
	p.started, p.target, p.sizes = true, t, sizes
	p.log.Info("digitalocean provider ready", "cluster", p.cfg.Cluster, "region", p.cfg.Region, "size", p.cfg.Size,
		"image", p.cfg.Image, "vpc", p.cfg.VPC, "droplet_limit", acct.DropletLimit, "account_status", acct.Status,
		"max_hourly_cost", p.cfg.MaxHourlyCost, "advertise", t.Advertise)
	return nil
}

// checkTarget refuses a target droplets could not use: no advertise
// address, one that only this machine can reach, or no agent download.
func checkTarget(t provider.Target) error {
	if t.Advertise == "" {
		return errors.New("the coordinator has no --advertise address: droplets dial the coordinator, so give the public (or VPC) host:port they reach it at")
	}
	host, port, err := net.SplitHostPort(t.Advertise)
	if err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("advertise address %q is not host:port", t.Advertise)
	}
	if a, err := netip.ParseAddr(host); err == nil && (a.IsLoopback() || a.IsUnspecified()) || host == "localhost" {
		return fmt.Errorf("advertise address %q is only reachable from this machine, not from droplets: give a public (or VPC) address", t.Advertise)
	}
	switch {
	case t.AgentURL == "" || t.AgentSHA256 == "":
		return errors.New("the coordinator serves no agent download for droplets to fetch (--download-listen)")
	case len(t.CACertPEM) == 0:
		return errors.New("no CA certificate for the droplets' user-data")
	case t.MintToken == nil:
		return errors.New("no way to mint join tokens for droplets")
	}
	return nil
}

// Close ends the provider; droplets stay, and only Delete removes them.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for _, tr := range p.transports {
		tr.CloseIdleConnections()
	}
	return nil
}

// ready returns the target once started, and not closed.
func (p *Provider) ready() (provider.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started || p.closed {
		return provider.Target{}, provider.ErrNotStarted
	}
	return p.target, nil
}

// call runs one API call (with its retries) bounded by RequestTimeout.
func (p *Provider) call(ctx context.Context, f func(ctx context.Context) (*godo.Response, error)) (*godo.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	return f(ctx)
}

// apiError wraps err from the API for what: ErrAPI, with the status and
// DigitalOcean's message and request id.
func apiError(what string, err error) error {
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		msg := er.Message
		if er.RequestID != "" {
			msg += " (request id " + er.RequestID + ")"
		}
		if er.Response.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%w: %s: the API token was refused (401): check %s: %s", ErrAPI, what, TokenEnv, msg)
		}
		return fmt.Errorf("%w: %s: %s: %s", ErrAPI, what, http.StatusText(er.Response.StatusCode), msg)
	}
	return fmt.Errorf("%w: %s: %w", ErrAPI, what, err)
}

// statusOf is the HTTP status of an API error, 0 if it has none (a lost
// connection, a timeout).
func statusOf(err error) int {
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// retryAfter is the Retry-After of a 429 or 503, 0 if none.
func retryAfter(err error) time.Duration {
	var er *godo.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return 0
	}
	if s := er.Response.StatusCode; s != http.StatusTooManyRequests && s != http.StatusServiceUnavailable {
		return 0
	}
	n, err := strconv.Atoi(er.Response.Header.Get("Retry-After"))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

func (p *Provider) account(ctx context.Context) (*godo.Account, error) {
	var acct *godo.Account
	_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
		acct, r, err = p.api.Account.Get(ctx)
		return r, err
	})
	if err != nil {
		return nil, apiError("check the token (GET /v2/account)", err)
	}
	return acct, nil
}

func (p *Provider) checkRegion(ctx context.Context) error {
	var all []godo.Region
	err := pages(ctx, p, "list regions", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		rs, r, err := p.api.Regions.List(ctx, opt)
		all = append(all, rs...)
		return r, err
	})
	if err != nil {
		return err
	}
	var avail []string
	for _, r := range all {
		if r.Slug == p.cfg.Region {
			if !r.Available {
				return fmt.Errorf("%w: region %s is not available for new droplets", provider.ErrInvalid, r.Slug)
			}
			return nil
		}
		if r.Available {
			avail = append(avail, r.Slug)
		}
	}
	return fmt.Errorf("%w: no region %s (available: %v)", provider.ErrInvalid, p.cfg.Region, avail)
}

func (p *Provider) listSizes(ctx context.Context) (map[string]godo.Size, error) {
	sizes := map[string]godo.Size{}
	err := pages(ctx, p, "list sizes", func(ctx context.Context, opt *godo.ListOptions) (*godo.Response, error) {
		ss, r, err := p.api.Sizes.List(ctx, opt)
		for _, s := range ss {
			sizes[s.Slug] = s
		}
		return r, err
	})
	return sizes, err
}

// sizeIn finds slug in sizes and checks that region offers it.
func sizeIn(sizes map[string]godo.Size, slug, region string) (godo.Size, error) {
	s, ok := sizes[slug]
	switch {
	case !ok:
		return godo.Size{}, fmt.Errorf("%w: no droplet size %q", provider.ErrInvalid, slug)
	case !s.Available || !slices.Contains(s.Regions, region):
		return godo.Size{}, fmt.Errorf("%w: size %s is not available in region %s", provider.ErrInvalid, slug, region)
	}
	return s, nil
}

// size returns the size slug (the default for ""), from the catalog read
// at Start, checked against the region.
func (p *Provider) size(slug string) (godo.Size, error) {
	if slug == "" {
		slug = p.cfg.Size
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return sizeIn(p.sizes, slug, p.cfg.Region)
}

// perPage is the most a list page holds.
const perPage = 200

// pages calls list for every page, 200 items a page.
func pages(ctx context.Context, p *Provider, what string, list func(context.Context, *godo.ListOptions) (*godo.Response, error)) error {
	for page := 1; ; page++ {
		resp, err := p.call(ctx, func(ctx context.Context) (*godo.Response, error) {
			return list(ctx, &godo.ListOptions{Page: page, PerPage: perPage})
		})
		if err != nil {
			return apiError(what, err)
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
	}
}
