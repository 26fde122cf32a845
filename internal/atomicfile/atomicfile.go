// Package atomicfile writes files so that readers, and the file system
// after a crash, see the old content or the new one, never a part of it.
package atomicfile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// TempPrefix starts the names of the temporary files Write makes beside
// their targets; a directory owner may delete such leftovers of a crash.
const TempPrefix = ".tmp-"

// Write writes r to path: into a temporary file beside it with mode perm,
// fsynced and checked by check (if not nil), renamed over path, and then
// the directory synced so that the rename survives a crash. ctx stops a
// long copy. On any error nothing is left behind and path is unchanged.
func Write(ctx context.Context, path string, r io.Reader, perm os.FileMode, check func(*os.File) error) (int64, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	var size int64
	if err == nil {
		size, err = Copy(ctx, f, r)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil && check != nil {
		err = check(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = SyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return size, nil
}

// WriteBytes is Write of data.
func WriteBytes(path string, data []byte, perm os.FileMode) error {
	_, err := Write(context.Background(), path, bytes.NewReader(data), perm, nil)
	return err
}

// Symlink points link at target, replacing whatever link was with one
// rename, so a reader sees the old link or the new one. A link already
// pointing at target is left alone.
func Symlink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(link), TempPrefix+filepath.Base(link)+"-"+strconv.Itoa(os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// SyncDir makes the entries of dir durable: a rename into it, a new file.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Copy copies r to w like io.Copy, but stops with ctx's error once ctx
// ends: a long copy into a file can be cancelled between reads.
func Copy(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.Copy(w, ctxReader{ctx: ctx, r: r})
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
