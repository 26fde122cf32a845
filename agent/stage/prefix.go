package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// object is one object to copy and the path it gets in the staged dir.
type object struct {
	attrs bucket.ObjectAttrs
	rel   string
}

// stagePrefix stages loose objects under prefix-<hex>, where hex hashes the
// listing (relative key, size, etag), so changed objects stage anew.
func (c *Cache) stagePrefix(ctx context.Context, b bucket.Bucket, loc bucket.Location, src *cloudmlv1.Source) (string, error) {
	objs, err := listSource(ctx, b, loc, src.GetUrl())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, o := range objs {
		// Length-prefixed fields keep the encoding unambiguous.
		for _, f := range []string{o.rel, strconv.FormatInt(o.attrs.Size, 10), o.attrs.ETag} {
			fmt.Fprintf(h, "%d:%s;", len(f), f)
		}
	}
	key := "prefix-" + hex.EncodeToString(h.Sum(nil))
	return c.do(ctx, key, func(ctx context.Context, tmp string) error {
		start := time.Now()
		var total int64
		for _, o := range objs {
			n, err := c.download(ctx, b, o, tmp)
			if err != nil {
				return err
			}
			total += n
		}
		c.logger().Debug("staged prefix", "url", src.GetUrl(), "objects", len(objs),
			"bytes", total, "elapsed", time.Since(start))
		return nil
	})
}

// listSource lists what a prefix URL names: the single object it names
// exactly, or every object under it as a directory.
func listSource(ctx context.Context, b bucket.Bucket, loc bucket.Location, rawURL string) ([]object, error) {
	key := strings.TrimSuffix(loc.Key, "/")
	if key != "" && !strings.HasSuffix(loc.Key, "/") {
		attrs, err := b.Attrs(ctx, key)
		switch {
		case err == nil:
			return []object{{attrs: attrs, rel: path.Base(key)}}, nil
		case !errors.Is(err, bucket.ErrNotExist):
			return nil, fmt.Errorf("stat %s: %w", rawURL, err)
		}
	}
	prefix := key
	if prefix != "" {
		prefix += "/"
	}
	list, err := b.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", rawURL, err)
	}
	objs := make([]object, 0, len(list))
	for _, a := range list {
		rel := strings.TrimPrefix(a.Key, prefix)
		if rel == "" || strings.HasSuffix(rel, "/") {
			continue // directory placeholder objects
		}
		if err := checkRel(rel); err != nil {
			return nil, fmt.Errorf("object %q under %s: %w", a.Key, rawURL, err)
		}
		objs = append(objs, object{attrs: a, rel: rel})
	}
	if len(objs) == 0 {
		return nil, &notExistError{msg: "no objects under " + rawURL, err: bucket.ErrNotExist}
	}
	return objs, nil
}

// checkRel rejects relative paths that are empty, absolute, contain ".."
// or otherwise would not stay inside the staging dir.
func checkRel(rel string) error {
	if !filepath.IsLocal(rel) || rel != path.Clean(rel) {
		return fmt.Errorf("%w: %q", archive.ErrUnsafePath, rel)
	}
	return nil
}

// download writes one object to tmp/rel, refusing to follow anything that
// is not a plain directory on the way.
func (c *Cache) download(ctx context.Context, b bucket.Bucket, o object, tmp string) (int64, error) {
	dst, err := safeJoin(tmp, o.rel)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, fmt.Errorf("stage %q: %w", o.attrs.Key, err)
	}
	r, err := b.NewReader(ctx, o.attrs.Key)
	if err != nil {
		return 0, readErr(b, o.attrs.Key, err)
	}
	defer r.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("stage %q: %w", o.attrs.Key, err)
	}
	n, err := io.Copy(f, r) // not counted as it flows: that would lose file-to-file copy offload
	c.received.Add(n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("download %s: %w", b.URL(o.attrs.Key), err)
	}
	c.downloads.Add(1)
	c.bytes.Add(n)
	return n, nil
}

// safeJoin joins rel under root and checks that no existing component on
// the way is a symlink, so the result resolves inside root.
func safeJoin(root, rel string) (string, error) {
	if err := checkRel(rel); err != nil {
		return "", err
	}
	dst := filepath.Join(root, rel)
	cur := root
	for _, part := range strings.Split(filepath.Dir(rel), string(filepath.Separator)) {
		if part == "." {
			break
		}
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		if !st.IsDir() {
			return "", fmt.Errorf("%w: %q passes through a non-directory", archive.ErrUnsafePath, rel)
		}
	}
	return dst, nil
}
