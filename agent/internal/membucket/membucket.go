// Package membucket is an in-memory bucket.Bucket for the agent's tests:
// it counts reads, can be told to fail, and opens "mem://name/prefix" URLs.
package membucket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/cloudml/cloudml/internal/bucket"
)

// Bucket is an in-memory bucket. The zero value is not usable; use New.
type Bucket struct {
	name string

	mu      sync.Mutex // protects objects and reads
	objects map[string][]byte
	reads   int
}

// New returns an empty bucket called name.
func New(name string) *Bucket { return &Bucket{name: name, objects: map[string][]byte{}} }

// Set stores data under key, replacing any previous object.
func (b *Bucket) Set(key string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = bytes.Clone(data)
}

// Get returns the object under key.
func (b *Bucket) Get(key string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.objects[key]
	return d, ok
}

// Keys returns every key with prefix, sorted.
func (b *Bucket) Keys(prefix string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Reads returns how many readers were opened.
func (b *Bucket) Reads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reads
}

// Opener returns an OpenFunc for URLs "mem://<name>/<key>" on b.
func (b *Bucket) Opener() func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
	return func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "mem" || u.Host != b.name {
			return nil, bucket.Location{}, fmt.Errorf("%w: %q", bucket.ErrBadURL, rawURL)
		}
		return b, bucket.Location{Scheme: "mem", Bucket: b.name, Key: strings.TrimPrefix(u.Path, "/")}, nil
	}
}

// NewReader implements bucket.Bucket.
func (b *Bucket) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.objects[key]
	if !ok {
		return nil, fmt.Errorf("%w: %q", bucket.ErrNotExist, key)
	}
	b.reads++
	return io.NopCloser(bytes.NewReader(d)), nil
}

// Put implements bucket.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.objects[key]; ok && ifAbsent {
		return fmt.Errorf("%w: %q", bucket.ErrExists, key)
	}
	b.objects[key] = data
	return nil
}

// Attrs implements bucket.Bucket.
func (b *Bucket) Attrs(ctx context.Context, key string) (bucket.ObjectAttrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.objects[key]
	if !ok {
		return bucket.ObjectAttrs{}, fmt.Errorf("%w: %q", bucket.ErrNotExist, key)
	}
	return attrs(key, d), nil
}

// List implements bucket.Bucket.
func (b *Bucket) List(ctx context.Context, prefix string) ([]bucket.ObjectAttrs, error) {
	var out []bucket.ObjectAttrs
	for _, k := range b.Keys(prefix) {
		d, _ := b.Get(k)
		out = append(out, attrs(k, d))
	}
	return out, nil
}

// URL implements bucket.Bucket.
func (b *Bucket) URL(key string) string { return "mem://" + b.name + "/" + key }

// Close implements bucket.Bucket.
func (b *Bucket) Close() error { return nil }

func attrs(key string, d []byte) bucket.ObjectAttrs {
	sum := sha256.Sum256(d)
	return bucket.ObjectAttrs{Key: key, Size: int64(len(d)), ETag: hex.EncodeToString(sum[:8])}
}
