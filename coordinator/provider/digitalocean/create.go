package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/godo"

	"github.com/cloudml/cloudml/coordinator/cloudinit"
	"github.com/cloudml/cloudml/coordinator/provider"
)

// Create makes req.Count droplets of req.Size (default Config.Size) in the
// cluster's region and VPC, behind its firewall (made first: without it
// Create makes nothing), one POST each, since each carries its own
// user-data with its own join token. Every droplet is tagged with the
// cluster, the pool and the request, and named
// <cluster>-<pool>-<request[:8]>-<k>; its token's label names the
// cluster, the request and that name (TokenLabel), which VerifyNode
// checks. The cost guard refuses the whole request first if it would
// pass Config.MaxHourlyCost. Create returns once the API has accepted
// each droplet, in state creating: agents register when they have booted.
//
// A create that fails with 429, 5xx or a lost connection may have made
// its droplet, and the API has no idempotency key: Create lists the
// request's droplets and looks for that name before it sends the create
// again, so a retry never makes a second droplet. After an error, the
// droplets returned exist; others may too (a create given up on), which
// List shows with the request's tag.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	t, err := p.ready()
	if err != nil {
		return nil, err
	}
	size, err := p.size(req.Size)
	if err != nil {
		return nil, err
	}
	release, err := p.reserve(ctx, req.Request, req.Count, size)
	if err != nil {
		return nil, err
	}
	defer release()
	vpc, err := p.ensureVPC(ctx)
	if err != nil {
		return nil, err
	}
	if p.cfg.Firewall {
		if _, err := p.ensureFirewall(ctx); err != nil {
			return nil, firewallError(p.cfg.Cluster, err)
		}
	}
	slots := req.Slots
	if slots == 0 {
		slots = size.Vcpus
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, p.cfg.Parallel)
		mu     sync.Mutex // protects made, errs, failed
		made   []provider.Node
		errs   []error
		failed bool
	)
	for k := 1; k <= req.Count; k++ {
		sem <- struct{}{}
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		s := p.spec(req, size, slots, vpc, k)
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := p.createOne(ctx, t, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs, failed = append(errs, err), true
				return
			}
			made = append(made, p.node(d))
		})
	}
	wg.Wait()
	sortNodes(made)
	if len(made) > 0 {
		p.log.Info("droplets created", "request", req.Request, "pool", req.Pool, "size", size.Slug, "count", len(made), "of", req.Count)
	}
	if len(errs) == 0 && ctx.Err() != nil && len(made) < req.Count {
		errs = append(errs, ctx.Err())
	}
	if len(errs) > 0 {
		return made, fmt.Errorf("created %d of %d droplets: %w", len(made), req.Count, errors.Join(errs...))
	}
	return made, nil
}

// dropletSpec is one droplet a Create makes.
type dropletSpec struct {
	name, label, request string
	slots                int
	gpu                  bool
	founder              bool                      // founds the swarm as it boots (FounderTag)
	req                  godo.DropletCreateRequest // UserData filled by createOne
}

func (p *Provider) spec(req provider.CreateRequest, size godo.Size, slots int, vpc string, k int) dropletSpec {
	name := DropletName(p.cfg.Cluster, req.Pool, req.Request, k)
	img := godo.DropletCreateImage{Slug: p.cfg.Image}
	if id, err := strconv.Atoi(p.cfg.Image); err == nil {
		img = godo.DropletCreateImage{ID: id}
	}
	var keys []godo.DropletCreateSSHKey
	for _, k := range p.cfg.SSHKeys {
		if id, err := strconv.Atoi(k); err == nil {
			keys = append(keys, godo.DropletCreateSSHKey{ID: id})
		} else {
			keys = append(keys, godo.DropletCreateSSHKey{Fingerprint: k})
		}
	}
	tags := []string{ClusterTag(p.cfg.Cluster), PoolTagPrefix + req.Pool, RequestTagPrefix + req.Request}
	founder := req.FoundSwarm && k == 1
	if founder {
		tags = append(tags, FounderTag)
	}
	return dropletSpec{
		name: name, label: TokenLabel(p.cfg.Cluster, req.Request, name), request: req.Request,
		slots: slots, gpu: size.GPUInfo != nil, founder: founder,
		req: godo.DropletCreateRequest{
			Name: name, Region: p.cfg.Region, Size: size.Slug, Image: img, SSHKeys: keys, VPCUUID: vpc,
			Tags: tags,
		},
	}
}

// DropletName is the name of droplet k of a create request: its cluster,
// pool and the request id's first 8 characters, shortened to fit a
// hostname label (63). It is unique within the request.
func DropletName(cluster, pool, request string, k int) string {
	suffix := fmt.Sprintf("-%s-%d", request[:min(8, len(request))], k)
	prefix := cluster + "-" + pool
	if len(prefix)+len(suffix) > 63 {
		prefix = strings.TrimRight(prefix[:63-len(suffix)], "-")
	}
	return prefix + suffix
}

// userData renders the user-data of droplet s with its join token.
func (p *Provider) userData(t provider.Target, s dropletSpec, token string) (cloudinit.UserData, error) {
	return cloudinit.Render(cloudinit.Config{
		Name: s.name, CoordinatorAddr: t.Advertise, CACertPEM: t.CACertPEM,
		AgentURL: t.AgentURL, AgentSHA256: t.AgentSHA256, JoinToken: token, Slots: s.slots,
		MetadataURL: p.cfg.MetadataURL, LogLevel: p.cfg.AgentLogLevel, FoundSwarm: s.founder,
	})
}

// createOne makes one droplet: it mints its token, renders its user-data
// and sends the create until the API answers, looking for the droplet by
// its request's tag and its name before every retry.
func (p *Provider) createOne(ctx context.Context, t provider.Target, s dropletSpec) (godo.Droplet, error) {
	tok, err := t.MintToken(s.label, s.slots)
	if err != nil {
		return godo.Droplet{}, fmt.Errorf("droplet %s: mint its join token: %w", s.name, err)
	}
	ud, err := p.userData(t, s, tok)
	if err != nil {
		return godo.Droplet{}, fmt.Errorf("droplet %s: %w", s.name, err)
	}
	creq := s.req
	creq.UserData = string(ud.Bytes())
	log := p.log.With("droplet_name", s.name, "request", s.request)
	for attempt := 0; ; attempt++ {
		var d *godo.Droplet
		_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
			d, r, err = p.once.Droplets.Create(ctx, &creq)
			return r, err
		})
		if err == nil {
			log.Debug("droplet created", "droplet", d.ID)
			return *d, nil
		}
		if ctx.Err() != nil {
			return godo.Droplet{}, fmt.Errorf("droplet %s: %w (it may exist: list by tag %s%s)", s.name, ctx.Err(), RequestTagPrefix, s.request)
		}
		if !retryable(err) {
			return godo.Droplet{}, createError(s.name, err)
		}
		// The create may have worked and its answer been lost: look first.
		found, lerr := p.find(ctx, s)
		if lerr != nil {
			return godo.Droplet{}, fmt.Errorf("droplet %s: the create failed (%w) and listing its request failed, so it is not retried: %w",
				s.name, apiError("create", err), lerr)
		}
		if found != nil {
			log.Warn("create answered with an error, but the droplet exists: keeping it", "droplet", found.ID, "error", err)
			return *found, nil
		}
		if attempt >= p.cfg.Retry.Max {
			return godo.Droplet{}, fmt.Errorf("droplet %s: gave up after %d attempts: %w", s.name, attempt+1, apiError("create", err))
		}
		wait := p.backoff(attempt, err)
		log.Warn("create failed and made no droplet; retrying", "attempt", attempt+1, "wait", wait, "error", err)
		if err := sleep(ctx, wait); err != nil {
			return godo.Droplet{}, fmt.Errorf("droplet %s: %w", s.name, err)
		}
	}
}

// find returns the droplet of s if it exists: its request's droplet with
// its name.
func (p *Provider) find(ctx context.Context, s dropletSpec) (*godo.Droplet, error) {
	ds, err := p.listTagged(ctx, RequestTagPrefix+s.request, s.gpu)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ds, func(d godo.Droplet) bool { return d.Name == s.name })
	if i < 0 {
		return nil, nil
	}
	return &ds[i], nil
}

// retryable says whether a failed call may be sent again: 429, a 5xx but
// 501, or no answer at all.
func retryable(err error) bool {
	switch s := statusOf(err); {
	case s == 0, s == http.StatusTooManyRequests:
		return true
	case s >= 500:
		return s != http.StatusNotImplemented
	}
	return false
}

// createError is a refused create: the account's droplet limit is
// provider.ErrCapacity, another 4xx provider.ErrInvalid.
func createError(name string, err error) error {
	e := apiError("create droplet "+name, err)
	switch s := statusOf(err); {
	case s == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(err.Error()), "droplet limit"):
		return fmt.Errorf("%w: %w", provider.ErrCapacity, e)
	case s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusForbidden:
		return fmt.Errorf("%w: %w", provider.ErrInvalid, e)
	}
	return e
}

// backoff is the wait before retry attempt+1: Retry-After when the API
// sent one, else WaitMin doubled per attempt up to WaitMax.
func (p *Provider) backoff(attempt int, err error) time.Duration {
	if ra := retryAfter(err); ra > 0 {
		return ra
	}
	d := p.cfg.Retry.WaitMin << min(attempt, 30)
	if d <= 0 || d > p.cfg.Retry.WaitMax {
		d = p.cfg.Retry.WaitMax
	}
	return d
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
