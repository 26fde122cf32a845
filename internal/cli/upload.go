package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// isBucketURL reports whether a source is already in a bucket.
func isBucketURL(s string) bool {
	return strings.HasPrefix(s, "gs://") || strings.HasPrefix(s, "file://")
}

// resolveSources uploads local code and data to the coordinator's default
// bucket and rewrites the spec to point at them.
func (a *App) resolveSources(ctx context.Context, spec *cloudmlv1.JobSpec, baseDir string) error {
	var local []*cloudmlv1.Source
	if spec.Code != nil && !isBucketURL(spec.Code.Url) {
		local = append(local, spec.Code)
	}
	for _, name := range sortedKeys(spec.Data) {
		if !isBucketURL(spec.Data[name].Url) {
			local = append(local, spec.Data[name])
		}
	}
	if len(local) == 0 {
		return nil
	}
	cctx, cancel := unary(ctx)
	info, err := a.nodes.GetClusterInfo(cctx, &cloudmlv1.GetClusterInfoRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("ask the coordinator for its bucket: %w", err)
	}
	b, loc, err := bucket.Open(ctx, info.DefaultBucket)
	if err != nil {
		return fmt.Errorf("open the coordinator's bucket %s: %w", info.DefaultBucket, err)
	}
	defer b.Close()
	up := uploader{b: b, prefix: loc.Key, stderr: a.Stderr}
	for _, src := range local {
		path := src.Url
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		if err := up.upload(ctx, path, src); err != nil {
			return err
		}
	}
	return nil
}

// uploader puts local code and data into a bucket by content digest.
type uploader struct {
	b      bucket.Bucket
	prefix string
	stderr io.Writer
}

func (u uploader) key(rel string) string {
	if u.prefix == "" {
		return rel
	}
	return u.prefix + "/" + rel
}

// upload packs a directory (or takes a file as it is), uploads it unless an
// object with the same digest is already there, and points src at it.
func (u uploader) upload(ctx context.Context, path string, src *cloudmlv1.Source) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("local source %s: %w (give a directory, or a gs:// or file:// URL)", path, err)
	}
	tmp, err := os.MkdirTemp("", "cloudml-pack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var file, key string
	if fi.IsDir() {
		var digest string
		file, digest, _, err = archive.PackFile(ctx, path, tmp)
		if err != nil {
			return fmt.Errorf("pack %s: %w", path, err)
		}
		key = u.key("code/" + strings.Replace(digest, ":", "-", 1) + ".tar.gz")
		src.Digest = digest
	} else {
		sum, err := fileSHA256(path)
		if err != nil {
			return err
		}
		file = path
		key = u.key("data/sha256-" + sum + "/" + filepath.Base(path))
	}
	src.Url = u.b.URL(key)
	if _, err := u.b.Attrs(ctx, key); err == nil {
		fmt.Fprintf(u.stderr, "%s: already in the bucket (%s)\n", path, src.Url)
		return nil
	} else if !errors.Is(err, bucket.ErrNotExist) {
		return fmt.Errorf("check %s: %w", src.Url, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pr := newProgress(f, st.Size(), "uploading "+path, u.stderr)
	err = u.b.Put(ctx, key, pr, true)
	pr.done()
	if err != nil && !errors.Is(err, bucket.ErrExists) {
		return fmt.Errorf("upload %s to %s: %w", path, src.Url, err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
