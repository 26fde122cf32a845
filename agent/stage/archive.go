package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stageArchive stages a packed archive under sha256-<hex>.
func (c *Cache) stageArchive(ctx context.Context, b bucket.Bucket, loc bucket.Location, src *cloudmlv1.Source) (string, error) {
	hexDigest, ok := strings.CutPrefix(src.GetDigest(), "sha256:")
	if !ok || len(hexDigest) != 64 || !isHex(hexDigest) {
		return "", fmt.Errorf("%w: %q is not sha256:<64 lowercase hex digits>", ErrBadDigest, src.GetDigest())
	}
	key := "sha256-" + hexDigest
	return c.do(ctx, key, func(ctx context.Context, tmp string) error {
		start := time.Now()
		f, err := os.CreateTemp(c.Dir, ".download-"+key+"-")
		if err != nil {
			return fmt.Errorf("create download file: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()

		r, err := b.NewReader(ctx, loc.Key)
		if err != nil {
			return readErr(b, loc.Key, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), c.counted(r))
		r.Close()
		if err != nil {
			return fmt.Errorf("download %s: %w", src.GetUrl(), err)
		}
		c.downloads.Add(1)
		c.bytes.Add(n)
		if got := hex.EncodeToString(h.Sum(nil)); got != hexDigest {
			return fmt.Errorf("%w: %s has sha256:%s, want %s", ErrDigestMismatch, src.GetUrl(), got, src.GetDigest())
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewind download: %w", err)
		}
		if err := archive.Extract(ctx, f, tmp); err != nil {
			return fmt.Errorf("extract %s: %w", src.GetUrl(), err)
		}
		c.logger().Debug("staged archive", "url", src.GetUrl(), "digest", src.GetDigest(),
			"bytes", n, "elapsed", time.Since(start))
		return nil
	})
}
