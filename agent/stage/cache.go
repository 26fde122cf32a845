package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Sentinel errors.
var (
	// ErrDigestMismatch: a downloaded archive does not hash to its digest.
	ErrDigestMismatch = errors.New("archive digest mismatch")
	// ErrBadDigest: a source's digest is not "sha256:<64 hex digits>".
	ErrBadDigest = errors.New("bad digest")
)

// Cache stages sources into Dir. The zero value with Dir set is usable; it
// is safe for concurrent use and must not be copied after first use.
type Cache struct {
	// Dir holds one directory per staged source.
	Dir string
	// Logger receives staging events; nil discards them.
	Logger hclog.Logger
	// Open opens buckets; nil means Buckets, as bucket.Open would.
	Open bucket.OpenFunc
	// Buckets shares open buckets; nil opens a new one for every source.
	Buckets *bucket.Pool

	group     singleflight.Group
	downloads atomic.Int64
	bytes     atomic.Int64
	received  atomic.Int64
}

// Stats returns how many objects the cache downloaded and their total size.
func (c *Cache) Stats() (downloads int64, bytes int64) {
	return c.downloads.Load(), c.bytes.Load()
}

// Received returns the bytes read from buckets so far, for progress
// reports while staging: an archive's as they arrive, a prefix's object by
// object; failed downloads included.
func (c *Cache) Received() int64 { return c.received.Load() }

// counted counts the bytes read through r into the cache's Received.
func (c *Cache) counted(r io.Reader) io.Reader { return countingReader{r, &c.received} }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Stage makes src available on disk and returns its directory. Concurrent
// calls for the same content share one download; later calls find it cached.
func (c *Cache) Stage(ctx context.Context, src *cloudmlv1.Source) (string, error) {
	if src == nil || src.GetUrl() == "" {
		return "", fmt.Errorf("%w: empty source url", bucket.ErrBadURL)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	b, loc, err := c.open(ctx, src.GetUrl())
	if err != nil {
		return "", fmt.Errorf("open %s: %w", src.GetUrl(), err)
	}
	defer b.Close()
	if src.GetDigest() != "" {
		return c.stageArchive(ctx, b, loc, src)
	}
	return c.stagePrefix(ctx, b, loc, src)
}

// do runs fill once per key: when dir already exists it returns it; else
// fill populates a fresh temporary directory that is renamed into place.
// Callers that share a fill wait for it (it runs under the first caller's
// ctx and bucket); one whose leader was cancelled tries again.
func (c *Cache) do(ctx context.Context, key string, fill func(ctx context.Context, tmp string) error) (string, error) {
	for try := 1; ; try++ {
		v, err, _ := c.group.Do(key, func() (any, error) { return c.fill(ctx, key, fill) })
		if err != nil {
			if isCtxErr(err) && ctx.Err() == nil && try < 3 {
				continue // the leader's ctx ended, not ours
			}
			return "", err
		}
		return v.(string), nil
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *Cache) fill(ctx context.Context, key string, fill func(ctx context.Context, tmp string) error) (string, error) {
	dir := filepath.Join(c.Dir, key)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		if st.Mode().Perm() != 0o755 { // staged by an agent that made it 0700
			if err := os.Chmod(dir, 0o755); err != nil {
				return "", fmt.Errorf("open staged dir to tasks: %w", err)
			}
		}
		return dir, nil
	}
	tmp, err := os.MkdirTemp(c.Dir, ".tmp-"+key+"-")
	if err != nil {
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	// Tasks may run as another user than the agent: they read the entry,
	// never write it (its files are read-only, the agent owns it).
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	if err := fill(ctx, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := readOnlyFiles(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Another agent process sharing the cache may have won the race.
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return dir, nil
		}
		return "", fmt.Errorf("move staged dir into place: %w", err)
	}
	return dir, nil
}

// readOnlyFiles clears the write bits of every regular file so a task that
// writes through its working-directory symlinks cannot corrupt the cache.
// Directories stay writable so the cache can still be cleaned.
func readOnlyFiles(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, info.Mode().Perm()&^0o222)
	})
}

func (c *Cache) logger() hclog.Logger {
	if c.Logger == nil {
		return hclog.NewNullLogger()
	}
	return c.Logger
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
