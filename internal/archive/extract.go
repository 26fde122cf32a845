package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Extract unpacks a tar.gz from r into dst (created if missing). Any unsafe
// entry aborts the whole extraction with an error wrapping ErrUnsafePath.
// Regular files, directories, hard links to files already extracted and
// symlinks that stay inside dst are written; nothing is ever written through
// a symlink.
func Extract(ctx context.Context, r io.Reader, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	root, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer gz.Close()
	x := &extractor{root: root, tr: tar.NewReader(gz), limit: MaxExtractSize}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := x.tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		if err := x.entry(hdr); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
}

// extractor holds the state of one Extract.
type extractor struct {
	root  string
	tr    *tar.Reader
	total int64 // bytes of regular files written so far
	limit int64 // most bytes of regular files to write (MaxExtractSize)
}

func unsafe(name, why string) error {
	return fmt.Errorf("%w: %q: %s", ErrUnsafePath, name, why)
}

// cleanName checks an entry or hard link name and returns it cleaned and
// relative to the root ("." for the root itself).
func cleanName(name string) (string, error) {
	if name == "" {
		return "", unsafe(name, "empty name")
	}
	if strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) || filepath.IsAbs(name) {
		return "", unsafe(name, "absolute path")
	}
	if strings.ContainsRune(name, 0) {
		return "", unsafe(name, "nul byte in name")
	}
	c := path.Clean(name)
	if escapes(c) {
		return "", unsafe(name, "escapes the destination")
	}
	return c, nil
}

// escapes reports whether the cleaned relative path c leaves its root.
func escapes(c string) bool {
	return c == ".." || strings.HasPrefix(c, "../")
}

func (x *extractor) entry(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return unsafe(hdr.Name, "device or fifo entry")
	default:
		return unsafe(hdr.Name, fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return unsafe(hdr.Name, "entry replaces the destination")
	}
	if err := x.mkdirs(hdr.Name, path.Dir(name)); err != nil {
		return err
	}
	full := filepath.Join(x.root, filepath.FromSlash(name))
	if hdr.Typeflag == tar.TypeDir {
		return x.dir(hdr.Name, full)
	}
	if err := clearPath(hdr.Name, full); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		return x.symlink(hdr, name, full)
	case tar.TypeLink:
		return x.hardlink(hdr, full)
	default:
		return x.file(hdr, full)
	}
}

// mkdirs creates the parent directories of an entry, refusing to pass
// through a symlink (which could point anywhere, even if it was extracted
// from this archive).
func (x *extractor) mkdirs(name, parent string) error {
	if parent == "." {
		return nil
	}
	cur := x.root
	for _, part := range strings.Split(parent, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return unsafe(name, "path traverses a symlink")
		case !fi.IsDir():
			return fmt.Errorf("%q: parent %s is not a directory", name, part)
		}
	}
	return nil
}

// clearPath removes whatever is at full (a later entry replaces an earlier
// one) unless it is a directory.
func clearPath(name, full string) error {
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%q: a directory is already there", name)
	}
	return os.Remove(full)
}

func (x *extractor) dir(name, full string) error {
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(full, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case fi.IsDir():
	default:
		if err := os.Remove(full); err != nil {
			return err
		}
		if err := os.Mkdir(full, 0o755); err != nil {
			return err
		}
	}
	return os.Chmod(full, 0o755)
}

func (x *extractor) file(hdr *tar.Header, full string) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%q: negative size", hdr.Name)
	}
	if x.total+hdr.Size > x.limit {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, x.limit)
	}
	x.total += hdr.Size
	mode := fs.FileMode(fileMode(fs.FileMode(hdr.Mode)))
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, x.tr); err != nil {
		_ = f.Close()
		return fmt.Errorf("%q: %w", hdr.Name, err)
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (x *extractor) symlink(hdr *tar.Header, name, full string) error {
	target := hdr.Linkname
	if target == "" {
		return unsafe(hdr.Name, "symlink with an empty target")
	}
	if strings.HasPrefix(target, "/") || filepath.IsAbs(target) {
		return unsafe(hdr.Name, fmt.Sprintf("symlink to absolute path %q", target))
	}
	if escapes(path.Join(path.Dir(name), target)) {
		return unsafe(hdr.Name, fmt.Sprintf("symlink to %q escapes the destination", target))
	}
	return os.Symlink(target, full)
}

func (x *extractor) hardlink(hdr *tar.Header, full string) error {
	link, err := cleanName(hdr.Linkname)
	if err != nil {
		return unsafe(hdr.Name, fmt.Sprintf("hard link to %q: %v", hdr.Linkname, err))
	}
	// The link's own parents must not be symlinks either.
	if err := x.checkNoSymlinkParents(hdr.Name, path.Dir(link)); err != nil {
		return err
	}
	old := filepath.Join(x.root, filepath.FromSlash(link))
	fi, err := os.Lstat(old)
	if err != nil {
		return unsafe(hdr.Name, fmt.Sprintf("hard link to %q, which is not in the archive before it", hdr.Linkname))
	}
	if !fi.Mode().IsRegular() {
		return unsafe(hdr.Name, fmt.Sprintf("hard link to %q, which is not a regular file", hdr.Linkname))
	}
	return os.Link(old, full)
}

func (x *extractor) checkNoSymlinkParents(name, parent string) error {
	if parent == "." {
		return nil
	}
	cur := x.root
	for _, part := range strings.Split(parent, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return unsafe(name, "link target's parent is missing")
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return unsafe(name, "link target traverses a symlink")
		}
	}
	return nil
}
