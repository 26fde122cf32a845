package bucket

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

func TestPoolSharesGCSBuckets(t *testing.T) {
	srv := newFakeGCS(t)
	ctx := context.Background()
	p := NewPool()
	t.Cleanup(func() { p.Close() })

	// A missing bucket fails with ErrNotExist and is not remembered.
	if _, _, err := p.Open(ctx, "gs://later/x"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open(missing bucket) = %v, want ErrNotExist", err)
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "later"})
	a, loc, err := p.Open(ctx, "gs://later/runs")
	if err != nil {
		t.Fatalf("Open after the bucket was created: %v", err)
	}
	if loc.Key != "runs" {
		t.Errorf("location key = %q, want runs", loc.Key)
	}
	b, _, err := p.Open(ctx, "gs://later/other/prefix")
	if err != nil {
		t.Fatal(err)
	}
	if a.(shared).Bucket != b.(shared).Bucket {
		t.Error("two opens of one bucket made two clients")
	}
	// A user's Close leaves the shared client working for the others.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	put(t, b, "k", "v")
	if got := get(t, b, "k"); got != "v" {
		t.Errorf("read %q after another user closed the bucket, want v", got)
	}

	// Once the pool is closed, opens still work, each on its own client.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c, _, err := p.Open(ctx, "gs://later")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(shared); ok {
		t.Error("an open after Close was shared")
	}
	if got := get(t, c, "k"); got != "v" {
		t.Errorf("read %q through a fresh client, want v", got)
	}
}

// A file bucket is opened afresh, so a directory replaced between opens is
// the one written to.
func TestPoolReopensFileBuckets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bkt")
	p := NewPool()
	defer p.Close()
	ctx := context.Background()
	a, _, err := p.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	b, _, err := p.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	put(t, b, "k", "v")
	if _, err := os.Stat(filepath.Join(dir, "k")); err != nil {
		t.Errorf("the object is not in the recreated directory: %v", err)
	}
	var nilPool *Pool
	c, _, err := nilPool.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatalf("a nil pool opens buckets itself: %v", err)
	}
	c.Close()
}
