package stage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudml/cloudml/internal/bucket"
)

// open opens the bucket a source URL names and returns the key (or prefix)
// inside it. A file:// URL's Location is the whole path with an empty key,
// so a URL that names a file (or nothing yet) is opened as its parent
// directory with the file's name as key; opening the path itself would
// create a directory where the object should be.
func (c *Cache) open(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
	if c.Open != nil {
		return c.Open(ctx, rawURL)
	}
	loc, err := bucket.Parse(rawURL)
	if err != nil {
		return nil, bucket.Location{}, err
	}
	if loc.Scheme == "file" && loc.Key == "" {
		if st, err := os.Stat(loc.Bucket); err != nil || !st.IsDir() {
			loc = bucket.Location{Scheme: "file", Bucket: filepath.Dir(loc.Bucket), Key: filepath.Base(loc.Bucket)}
		}
	}
	b, err := c.Buckets.OpenAt(ctx, loc)
	if err != nil {
		return nil, bucket.Location{}, err
	}
	return b, loc, nil
}

// notExistError reads better than the bucket's own message and still
// matches bucket.ErrNotExist.
type notExistError struct {
	msg string
	err error
}

func (e *notExistError) Error() string { return e.msg }
func (e *notExistError) Unwrap() error { return e.err }

// missing wraps err, which matches bucket.ErrNotExist, as "object K does
// not exist in URL".
func missing(b bucket.Bucket, key string, err error) error {
	return &notExistError{msg: fmt.Sprintf("object %q does not exist in %s", key, b.URL("")), err: err}
}

// readErr describes a failed read of key, naming a missing object plainly.
func readErr(b bucket.Bucket, key string, err error) error {
	if errors.Is(err, bucket.ErrNotExist) {
		return missing(b, key, err)
	}
	return fmt.Errorf("download %s: %w", b.URL(key), err)
}
