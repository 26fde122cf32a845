package bucket

import (
	"context"
	"errors"
	"sync"
)

// OpenFunc opens the bucket a URL names, as Open does.
type OpenFunc func(ctx context.Context, rawURL string) (Bucket, Location, error)

// Pool shares one open gs bucket among all its users. Opening one makes a
// storage client (with its own connections) and checks that the bucket
// exists; an agent that did that for every task's upload spent several
// milliseconds of CPU per task on it. file:// buckets are opened every
// time: that is cheap, and a directory replaced since is then the one
// written to. A failed open is not kept, so a bucket created later is
// found. A nil *Pool opens a new bucket every time.
type Pool struct {
	mu      sync.Mutex // protects the fields below
	buckets map[Location]Bucket
	closed  bool
	opts    Options // how buckets are opened; read-only
}

// NewPool returns an empty Pool.
func NewPool() *Pool { return NewPoolWith(Options{}) }

// NewPoolWith returns an empty Pool that opens buckets with opts.
func NewPoolWith(opts Options) *Pool { return &Pool{buckets: map[Location]Bucket{}, opts: opts} }

// Open is Open through the pool.
func (p *Pool) Open(ctx context.Context, rawURL string) (Bucket, Location, error) {
	loc, err := Parse(rawURL)
	if err != nil {
		return nil, Location{}, err
	}
	b, err := p.OpenAt(ctx, loc)
	if err != nil {
		return nil, Location{}, err
	}
	return b, loc, nil
}

// OpenAt is OpenAt through the pool. The caller closes the bucket as
// usual; a shared one stays open until the pool is closed.
func (p *Pool) OpenAt(ctx context.Context, loc Location) (Bucket, error) {
	if p == nil {
		return OpenAt(ctx, loc)
	}
	if loc.Scheme != "gs" {
		return OpenAtWith(ctx, loc, p.opts)
	}
	key := Location{Scheme: loc.Scheme, Bucket: loc.Bucket}
	p.mu.Lock()
	b, ok := p.buckets[key]
	p.mu.Unlock()
	if ok {
		return shared{b}, nil
	}
	b, err := OpenAtWith(ctx, key, p.opts)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch old, ok := p.buckets[key]; {
	case p.closed:
		return b, nil // the caller's alone; its Close releases it
	case ok: // another caller opened it meanwhile
		b.Close()
		b = old
	default:
		p.buckets[key] = b
	}
	return shared{b}, nil
}

// Close closes the shared buckets; later opens are not shared.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for k, b := range p.buckets {
		errs = append(errs, b.Close())
		delete(p.buckets, k)
	}
	return errors.Join(errs...)
}

// shared is a pooled bucket; closing it leaves it open for the others.
type shared struct{ Bucket }

func (shared) Close() error { return nil }
