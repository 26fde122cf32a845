// Package archive packs a code directory into a deterministic tar.gz (so the
// same code has the same digest and is uploaded once) and extracts archives
// safely into a staging directory.
package archive

import (
	"context"
	"errors"
	"io"
)

// ErrUnsafePath: an entry would land outside the destination (absolute path,
// "..", or a symlink that points outside), or is a device or other special file.
var ErrUnsafePath = errors.New("unsafe path in archive")

// IgnoreFile is the name of the file whose patterns Pack skips.
const IgnoreFile = ".cloudmlignore"

// Pack writes dir as a gzip-compressed tar to w and returns "sha256:<hex>" of
// the bytes written. Entries are sorted, times and owners zeroed, so equal
// trees give equal digests.
func Pack(ctx context.Context, dir string, w io.Writer) (digest string, err error) {
	panic("unimplemented")
}

// Extract unpacks a tar.gz from r into dst (created if missing). Any unsafe
// entry aborts the whole extraction with an error wrapping ErrUnsafePath.
func Extract(ctx context.Context, r io.Reader, dst string) error {
	panic("unimplemented")
}
