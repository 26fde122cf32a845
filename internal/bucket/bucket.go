// Package bucket is CloudML's object-store abstraction: gs:// buckets through
// cloud.google.com/go/storage (honouring STORAGE_EMULATOR_HOST) and file://
// directories for the embedded default. The client uploads code through it,
// agents stage code and data and upload results through it.
package bucket

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors; implementations wrap them with %w.
var (
	// ErrNotExist: the object (or the bucket itself) does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExists: a write with IfAbsent found the object already there.
	ErrExists = errors.New("object already exists")
	// ErrBadURL: the URL is not gs://bucket[/prefix] or file:///dir.
	ErrBadURL = errors.New("bad bucket url")
	// ErrBadKey: an object key is empty, absolute, has an empty, "." or ".."
	// segment, or holds a nul byte.
	ErrBadKey = errors.New("bad object key")
)

// ObjectAttrs describes one object.
type ObjectAttrs struct {
	// Key is the object's key relative to the bucket root.
	Key string
	// Size is the object's size in bytes.
	Size int64
	// ETag changes when the object changes. GCS: "md5:<hex>" when GCS keeps
	// an MD5, else "crc32c:<hex>-gen:<generation>". File: "<size>:<mtime_ns>",
	// a cheap change detector rather than a content hash.
	ETag string
}

// Bucket is one bucket (gs) or root directory (file).
type Bucket interface {
	// NewReader opens key for reading; a missing key wraps ErrNotExist.
	NewReader(ctx context.Context, key string) (io.ReadCloser, error)
	// Put writes r to key. With ifAbsent an existing key wraps ErrExists and
	// nothing is written (GCS DoesNotExist precondition; file: temporary file
	// hard-linked into place). Without ifAbsent an existing key is replaced
	// atomically.
	Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error
	// Attrs returns key's attributes; a missing key wraps ErrNotExist.
	Attrs(ctx context.Context, key string) (ObjectAttrs, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectAttrs, error)
	// URL returns the full URL of key (gs://bucket/key or file:///root/key).
	URL(key string) string
	// Close releases the client.
	Close() error
}

// Location is a parsed bucket URL.
type Location struct {
	// Scheme is "gs" or "file".
	Scheme string
	// Bucket is the GCS bucket name, or the root directory for file.
	Bucket string
	// Key is the object key or prefix inside the bucket ("" for the root).
	Key string
}

// WithSize tells Put that r holds n bytes; a small object then needs no
// large upload buffer. A wrong n costs speed, never correctness.
func WithSize(r io.Reader, n int64) io.Reader { return sized{Reader: r, n: n} }

type sized struct {
	io.Reader
	n int64
}

// sizeOf returns how many bytes r holds, or -1 if it cannot say.
func sizeOf(r io.Reader) int64 {
	switch v := r.(type) {
	case sized:
		return v.n
	case interface{ Len() int }: // bytes.Reader, bytes.Buffer, strings.Reader
		return int64(v.Len())
	}
	return -1
}
