package bucket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// tempPrefix starts the name of every in-progress upload; List skips such
// files and keys may not use it.
const tempPrefix = ".cloudml-tmp-"

// fileBucket is a Bucket backed by a directory. Every access goes through an
// os.Root, so neither ".." nor symbolic links can reach outside the root.
type fileBucket struct {
	dir  string   // absolute, cleaned
	root *os.Root // the opened directory
}

// openFile opens (creating if needed) the directory dir as a bucket.
func openFile(ctx context.Context, dir string) (*fileBucket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: file bucket %q is not an absolute path; %s", ErrBadURL, dir, acceptedForms)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bucket directory %q: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open bucket directory %q: %w", dir, err)
	}
	return &fileBucket{dir: dir, root: root}, nil
}

// name validates key and returns its path relative to the root.
func (b *fileBucket) name(key string) (string, error) {
	if err := validateKey(key); err != nil {
		return "", err
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, tempPrefix) {
			return "", fmt.Errorf("%w %q: segments starting with %q are reserved", ErrBadKey, key, tempPrefix)
		}
	}
	rel := filepath.FromSlash(key)
	full := filepath.Join(b.dir, rel)
	if !strings.HasPrefix(full, b.dir+string(filepath.Separator)) {
		return "", fmt.Errorf("%w %q: resolves outside the bucket root", ErrBadKey, key)
	}
	return rel, nil
}

// notExist maps a filesystem error for key to ErrNotExist where it means the
// object is absent.
func notExist(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %q", ErrNotExist, key)
	}
	return fmt.Errorf("object %q: %w", key, err)
}

// NewReader implements Bucket.
func (b *fileBucket) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	rel, err := b.name(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := b.root.Open(rel)
	if err != nil {
		return nil, notExist(key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, notExist(key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %q is not a regular file", ErrNotExist, key)
	}
	return f, nil
}

// Put implements Bucket. It writes a temporary file beside the target, syncs
// it, then renames it into place (or hard-links it when ifAbsent, which fails
// rather than replace an existing object).
func (b *fileBucket) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) (err error) {
	rel, err := b.name(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ifAbsent {
		if _, err := b.root.Lstat(rel); err == nil {
			return fmt.Errorf("%w: %q", ErrExists, key)
		}
	}
	dir := filepath.Dir(rel)
	if err := b.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	tmp := filepath.Join(dir, tempPrefix+randomHex())
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if rmErr := b.root.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("put %q: remove temporary file: %w", key, rmErr)
		}
	}()
	if _, err := atomicfile.Copy(ctx, f, r); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	closeErr := f.Close()
	f = nil
	if closeErr != nil {
		return fmt.Errorf("put %q: %w", key, closeErr)
	}
	if ifAbsent {
		if err := b.root.Link(tmp, rel); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %q", ErrExists, key)
			}
			return fmt.Errorf("put %q: %w", key, err)
		}
		return nil
	}
	if err := b.root.Rename(tmp, rel); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

// Attrs implements Bucket.
func (b *fileBucket) Attrs(ctx context.Context, key string) (ObjectAttrs, error) {
	rel, err := b.name(key)
	if err != nil {
		return ObjectAttrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectAttrs{}, err
	}
	fi, err := b.root.Stat(rel)
	if err != nil {
		return ObjectAttrs{}, notExist(key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectAttrs{}, fmt.Errorf("%w: %q is not a regular file", ErrNotExist, key)
	}
	return fileAttrs(key, fi), nil
}

// fileAttrs builds ObjectAttrs from a regular file's info. The ETag is
// "size:mtime_ns": a cheap change detector, not a content hash.
func fileAttrs(key string, fi fs.FileInfo) ObjectAttrs {
	return ObjectAttrs{
		Key:  key,
		Size: fi.Size(),
		ETag: fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().UnixNano()),
	}
}

// List implements Bucket. It walks only the deepest directory the prefix
// fully names, follows symbolic links to files that stay inside the root,
// and skips temporary upload files.
func (b *fileBucket) List(ctx context.Context, prefix string) ([]ObjectAttrs, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	start := "."
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	var out []ObjectAttrs
	err := fs.WalkDir(b.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				if p == start {
					return fs.SkipAll // nothing under this prefix
				}
				return nil // removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), tempPrefix) {
				return fs.SkipDir
			}
			// Skip directories that cannot hold a matching key.
			if !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(p, prefix) || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := b.root.Stat(filepath.FromSlash(p)) // follows in-root symlinks
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		out = append(out, fileAttrs(path.Clean(p), fi))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// URL implements Bucket.
func (b *fileBucket) URL(key string) string {
	return Location{Scheme: "file", Bucket: filepath.ToSlash(b.dir), Key: key}.String()
}

// Close implements Bucket.
func (b *fileBucket) Close() error {
	return b.root.Close()
}

// randomHex returns 16 random hex digits for temporary names.
func randomHex() string {
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}
