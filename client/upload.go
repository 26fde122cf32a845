package client

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

// Upload is one local source put in the bucket.
type Upload struct {
	// Path is the local directory or file.
	Path string
	// URL is the object in the bucket: code/sha256-<hex>.tar.gz for a
	// directory (packed), data/sha256-<hex>/<name> for a file.
	URL string
	// Size is the object's size in bytes.
	Size int64
	// Skipped is set when the bucket had the object already: nothing was
	// sent.
	Skipped bool
}

// uploader puts local code and data into a bucket by content digest.
type uploader struct {
	b        bucket.Bucket
	prefix   string
	progress Progress
}

func (u uploader) key(rel string) string {
	if u.prefix == "" {
		return rel
	}
	return u.prefix + "/" + rel
}

// upload packs a directory (or takes a file as it is), uploads it unless an
// object with the same digest is already there, and points src at it.
func (u uploader) upload(ctx context.Context, path string, src *cloudmlv1.Source) (Upload, error) {
	res := Upload{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("local source %s: %w (give a directory, or a gs:// or file:// URL)", path, err)
	}
	tmp, err := os.MkdirTemp("", "cloudml-pack-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	var file, key string
	if fi.IsDir() {
		var digest string
		file, digest, _, err = archive.PackFile(ctx, path, tmp)
		if err != nil {
			return res, fmt.Errorf("pack %s: %w", path, err)
		}
		key = u.key("code/" + strings.Replace(digest, ":", "-", 1) + ".tar.gz")
		src.Digest = digest
	} else {
		sum, err := fileSHA256(path)
		if err != nil {
			return res, err
		}
		file = path
		key = u.key("data/sha256-" + sum + "/" + filepath.Base(path))
	}
	src.Url = u.b.URL(key)
	res.URL = src.Url
	if attrs, err := u.b.Attrs(ctx, key); err == nil {
		res.Size, res.Skipped = attrs.Size, true
		return res, nil
	} else if !errors.Is(err, bucket.ErrNotExist) {
		return res, fmt.Errorf("check %s: %w", src.Url, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	res.Size = st.Size()
	tr := start(u.progress, Transfer{Kind: KindUpload, Name: path, Total: res.Size})
	cr := &countingReader{r: f, t: tr, total: res.Size}
	err = u.b.Put(ctx, key, cr, true)
	cr.flush()
	if err != nil && !errors.Is(err, bucket.ErrExists) {
		err = fmt.Errorf("upload %s to %s: %w", path, src.Url, err)
		tr.Done(err)
		return res, err
	}
	tr.Done(nil)
	return res, nil
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
