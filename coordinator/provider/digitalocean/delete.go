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

	"github.com/digitalocean/godo"
)

// reissueAfter is how many polls Delete waits for a droplet whose DELETE
// was accepted to disappear before it sends the DELETE again.
const reissueAfter = 30

// Delete deletes the droplets with these ids and returns nil once the API
// answers 404 for every one: accepting the DELETE is not enough. An id
// that is not a droplet's, or a droplet already gone, is gone. A droplet
// without the cluster's tag is never deleted (an error). Failed DELETEs
// are sent again until ctx ends or Config.DeleteTimeout passes; the error
// then names the droplets not gone.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	if _, err := p.ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DeleteTimeout)
	defer cancel()
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, p.cfg.Parallel)
		mu       sync.Mutex // protects failed, errs
		failed   []string
		errs     []error
		gone     int
		deleting []int
	)
	for _, s := range ids {
		id, err := strconv.Atoi(s)
		if err != nil || id <= 0 {
			continue // not a droplet id: nothing of ours
		}
		deleting = append(deleting, id)
	}
	p.mu.Lock()
	for _, id := range deleting {
		p.deleting[id] = true
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		for _, id := range deleting {
			delete(p.deleting, id)
		}
		p.mu.Unlock()
	}()
	for _, id := range deleting {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := p.deleteOne(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed, errs = append(failed, strconv.Itoa(id)), append(errs, err)
				return
			}
			gone++
		})
	}
	wg.Wait()
	if gone > 0 {
		p.log.Info("droplets deleted", "count", gone)
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		return fmt.Errorf("%d of %d droplets not confirmed gone (%s): %w", len(failed), len(deleting), strings.Join(failed, ", "), errors.Join(errs...))
	}
	return nil
}

// deleteOne deletes droplet id and polls until the API answers 404.
func (p *Provider) deleteOne(ctx context.Context, id int) error {
	clusterTag := ClusterTag(p.cfg.Cluster)
	log := p.log.With("droplet", id)
	var last error // the last failure, for the error if time runs out
	accepted, polls := false, 0
	for {
		var d *godo.Droplet
		_, err := p.call(ctx, func(ctx context.Context) (r *godo.Response, err error) {
			d, r, err = p.api.Droplets.Get(ctx, id)
			return r, err
		})
		switch {
		case statusOf(err) == http.StatusNotFound:
			return nil
		case err != nil && ctx.Err() != nil: // time is up: keep the API's last word
		case err != nil:
			last = apiError("get", err)
		case !slices.Contains(d.Tags, clusterTag):
			return fmt.Errorf("droplet %d (%s) is not tagged %s: not deleting it", id, d.Name, clusterTag)
		case !accepted || polls >= reissueAfter:
			_, err := p.call(ctx, func(ctx context.Context) (*godo.Response, error) {
				return p.api.Droplets.Delete(ctx, id)
			})
			switch {
			case statusOf(err) == http.StatusNotFound:
				return nil
			case err != nil && ctx.Err() != nil:
			case err != nil:
				last = apiError("delete", err)
				log.Warn("droplet delete failed; trying again", "error", err)
			default:
				if !accepted {
					log.Debug("droplet delete accepted; waiting for it to go")
				}
				accepted, polls, last = true, 0, nil
				continue // look at once: it is usually gone
			}
		default:
			polls++
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			if last == nil {
				last = errors.New("the API still shows it")
			}
			return fmt.Errorf("droplet %d: %w (delete accepted: %v; last: %w)", id, err, accepted, last)
		}
	}
}
