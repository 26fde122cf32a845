package simagent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Fleet is a set of simulated agents.
type Fleet struct {
	cfg   Config
	rec   *Recorder
	log   hclog.Logger
	nodes []*node
}

// New makes a Fleet of cfg.Nodes simulated agents; Run starts them.
func New(cfg Config) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, rec: cfg.Recorder, log: cfg.Logger}
	if f.rec == nil {
		f.rec = NewRecorder()
	}
	if f.log == nil {
		f.log = hclog.NewNullLogger()
	}
	for i := range cfg.Nodes {
		f.nodes = append(f.nodes, newNode(f, fmt.Sprintf("%s-%d", cfg.HostnamePrefix, i+1)))
	}
	return f, nil
}

// Recorder is where the fleet records what it saw.
func (f *Fleet) Recorder() *Recorder { return f.rec }

// Run registers every node (RegisterParallel at a time, each starting its
// session as soon as it registered) and serves their sessions until ctx
// ends. It returns an error only if a node could not register (its token
// refused, or ctx ended first); call failures after that are retried and
// recorded.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, f.cfg.RegisterParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, n := range f.nodes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			err := n.register(ctx)
			<-sem
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", n.host, err))
				mu.Unlock()
				return
			}
			n.serve(ctx)
		})
	}
	wg.Wait()
	for _, n := range f.nodes {
		n.close()
	}
	if err := errors.Join(errs...); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("simagent: %w", err)
	}
	return nil
}
