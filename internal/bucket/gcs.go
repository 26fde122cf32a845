package bucket

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// gcsChunkSize is the resumable-upload chunk size of a large upload, or one
// of unknown size; each writer buffers one chunk (see uploadChunk).
const gcsChunkSize = 16 << 20

// emulatorEnv names the variable the storage library reads to talk to an
// emulator such as fake-gcs-server instead of Google.
const emulatorEnv = "STORAGE_EMULATOR_HOST"

// maxAttempts bounds the attempts of one GCS call; openTimeout bounds the
// check that a bucket exists.
const (
	maxAttempts = 5
	openTimeout = 30 * time.Second
)

// gcsBucket is a Bucket backed by one Google Cloud Storage bucket.
type gcsBucket struct {
	name   string
	client *storage.Client
	bkt    *storage.BucketHandle
}

// openGCS connects to GCS (or the emulator named by STORAGE_EMULATOR_HOST,
// without credentials unless opts.GCSTokens gives some) and checks that
// bucket name exists.
func openGCS(ctx context.Context, name string, o Options) (*gcsBucket, error) {
	hint := ""
	if o.AuthHint != "" {
		hint = " (" + o.AuthHint + ")"
	}
	opts := []option.ClientOption{storage.WithJSONReads()}
	switch {
	case o.GCSTokens != nil:
		// Our own HTTP client carries the token, so the library's auth
		// (which an emulator turns off) stays out of it: with an emulator
		// the requests still carry the token, as with Google.
		base := http.DefaultTransport.(*http.Transport).Clone()
		hc := &http.Client{Transport: &oauth2.Transport{Source: o.GCSTokens(name), Base: base}}
		opts = append(opts, option.WithoutAuthentication(), option.WithHTTPClient(hc))
	case os.Getenv(emulatorEnv) != "":
		opts = append(opts, option.WithoutAuthentication())
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		if hint == "" {
			hint = " (are application default credentials set up?)"
		}
		return nil, fmt.Errorf("create storage client%s: %w", hint, err)
	}
	// Bounded retries: the library retries transient errors (a refused
	// connection among them) until the context ends, so an unreachable
	// endpoint would otherwise hang a staging or an upload for good.
	bkt := client.Bucket(name).Retryer(storage.WithMaxAttempts(maxAttempts))
	b := &gcsBucket{name: name, client: client, bkt: bkt}
	actx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if _, err := b.bkt.Attrs(actx); err != nil {
		client.Close()
		if errors.Is(err, storage.ErrBucketNotExist) || httpCode(err) == http.StatusNotFound {
			return nil, fmt.Errorf("bucket %q does not exist (create it with `gcloud storage buckets create gs://%s`, or check the name and the project): %w",
				name, name, ErrNotExist)
		}
		where := "storage.googleapis.com"
		if h := os.Getenv(emulatorEnv); h != "" {
			where = h + " (" + emulatorEnv + ")"
		}
		if c := httpCode(err); c == http.StatusUnauthorized || c == http.StatusForbidden {
			return nil, fmt.Errorf("open bucket %q at %s: access refused%s: %w", name, where, hint, err)
		}
		return nil, fmt.Errorf("open bucket %q at %s: %w", name, where, err)
	}
	return b, nil
}

// httpCode returns the HTTP status of a googleapi error, or 0.
func httpCode(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

// mapErr turns storage errors about key into this package's sentinels.
func (b *gcsBucket) mapErr(op, key string, err error) error {
	switch {
	case errors.Is(err, storage.ErrObjectNotExist):
		return fmt.Errorf("%w: %s", ErrNotExist, b.URL(key))
	case errors.Is(err, storage.ErrBucketNotExist):
		return fmt.Errorf("bucket %q does not exist: %w", b.name, ErrNotExist)
	}
	switch httpCode(err) {
	case http.StatusPreconditionFailed:
		return fmt.Errorf("%w: %s", ErrExists, b.URL(key))
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s: %v", ErrNotExist, b.URL(key), err)
	}
	return fmt.Errorf("%s %s: %w", op, b.URL(key), err)
}

// NewReader implements Bucket.
func (b *gcsBucket) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validateKey(key); err != nil {
		return nil, err
	}
	r, err := b.bkt.Object(key).NewReader(ctx)
	if err != nil {
		return nil, b.mapErr("read", key, err)
	}
	return r, nil
}

// Put implements Bucket. With ifAbsent the write carries a DoesNotExist
// precondition, so GCS itself refuses to replace an existing object.
func (b *gcsBucket) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	if err := validateKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	obj := b.bkt.Object(key)
	if ifAbsent {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	}
	w := obj.NewWriter(ctx)
	w.ChunkSize = uploadChunk(r)
	if _, err := io.Copy(w, r); err != nil {
		cancel() // abort the upload; Close then reports the cancellation
		_ = w.Close()
		return b.mapErr("put", key, err)
	}
	if err := w.Close(); err != nil {
		return b.mapErr("put", key, err)
	}
	return nil
}

// uploadChunk is the writer's chunk size for an upload of r. The library
// allocates the whole chunk for every writer, so a 1 KiB manifest would
// cost a 16 MiB buffer; an object of known size (see WithSize) gets just
// over its size, which the library rounds up to 256 KiB, and goes in one
// request. If it turns out larger, the upload simply takes more chunks.
func uploadChunk(r io.Reader) int {
	n := sizeOf(r)
	if n < 0 || n >= gcsChunkSize {
		return gcsChunkSize
	}
	return int(n) + 1
}

// Attrs implements Bucket.
func (b *gcsBucket) Attrs(ctx context.Context, key string) (ObjectAttrs, error) {
	if err := validateKey(key); err != nil {
		return ObjectAttrs{}, err
	}
	a, err := b.bkt.Object(key).Attrs(ctx)
	if err != nil {
		return ObjectAttrs{}, b.mapErr("stat", key, err)
	}
	return gcsAttrs(a), nil
}

// gcsAttrs converts storage attributes. The ETag is the MD5 when GCS has one
// (content identity), else CRC32C plus generation (composite objects).
func gcsAttrs(a *storage.ObjectAttrs) ObjectAttrs {
	etag := fmt.Sprintf("crc32c:%08x-gen:%d", a.CRC32C, a.Generation)
	if len(a.MD5) > 0 {
		etag = "md5:" + hex.EncodeToString(a.MD5)
	}
	return ObjectAttrs{Key: a.Name, Size: a.Size, ETag: etag}
}

// List implements Bucket. The "dir/" placeholders some tools create are left
// out; any other object whose name is not a valid key (a ".." segment, a
// leading "/") fails the listing with ErrBadKey, since staging it could
// escape the destination directory.
func (b *gcsBucket) List(ctx context.Context, prefix string) ([]ObjectAttrs, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "CRC32C", "Generation", "MD5"}); err != nil {
		return nil, fmt.Errorf("list %s: %w", b.URL(prefix), err)
	}
	var out []ObjectAttrs
	it := b.bkt.Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, b.mapErr("list", prefix, err)
		}
		if err := checkKey(a.Name); err != nil {
			if strings.HasSuffix(a.Name, "/") && checkKey(strings.TrimSuffix(a.Name, "/")) == nil {
				continue
			}
			return nil, fmt.Errorf("%w: object %q in %s: %s; rename or delete it", ErrBadKey, a.Name, b.URL(""), err)
		}
		out = append(out, gcsAttrs(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// URL implements Bucket.
func (b *gcsBucket) URL(key string) string {
	return Location{Scheme: "gs", Bucket: b.name, Key: key}.String()
}

// Close implements Bucket.
func (b *gcsBucket) Close() error {
	return b.client.Close()
}
