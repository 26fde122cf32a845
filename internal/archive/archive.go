package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrUnsafePath: an entry would land outside the destination (absolute path,
// "..", or a symlink that points outside), or is a device or other special file.
var ErrUnsafePath = errors.New("unsafe path in archive")

// ErrTooLarge is returned by Extract when the archive unpacks to more than
// MaxExtractSize bytes.
var ErrTooLarge = errors.New("archive too large")

// IgnoreFile is the name of the file whose patterns Pack skips.
const IgnoreFile = ".cloudmlignore"

// MaxExtractSize caps the total size of the regular files Extract writes.
const MaxExtractSize int64 = 64 << 30

// epoch is the modification time written for every entry.
var epoch = time.Unix(0, 0)

// Pack writes dir as a gzip-compressed tar to w and returns "sha256:<hex>" of
// the bytes written. Entries are sorted, times and owners zeroed, so equal
// trees give equal digests.
func Pack(ctx context.Context, dir string, w io.Writer) (digest string, err error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("pack %s: not a directory", dir)
	}
	ign, err := loadIgnore(filepath.Join(root, IgnoreFile))
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}

	h := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(w, h))
	tw := tar.NewWriter(gz)
	p := &packer{ctx: ctx, root: root, ign: ign, tw: tw}
	if err := filepath.WalkDir(root, p.visit); err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// PackFile packs dir into a new temporary file in tmpDir (the system's
// default when empty) and returns its path, digest and size, ready for an
// upload that needs the length up front. The caller removes the file.
func PackFile(ctx context.Context, dir, tmpDir string) (path string, digest string, size int64, err error) {
	f, err := os.CreateTemp(tmpDir, "cloudml-code-*.tar.gz")
	if err != nil {
		return "", "", 0, fmt.Errorf("pack %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	cw := &countWriter{w: f}
	digest, err = Pack(ctx, dir, cw)
	if err != nil {
		return "", "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("pack %s: %w", dir, err)
	}
	return f.Name(), digest, cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// packer holds the state of one Pack walk.
type packer struct {
	ctx  context.Context
	root string
	ign  *ignore
	tw   *tar.Writer
}

func (p *packer) visit(full string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if full == p.root {
		return nil
	}
	rel, err := filepath.Rel(p.root, full)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	if d.Name() == ".git" {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	if p.ign.match(rel, d.IsDir()) {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: rel, ModTime: epoch}
	switch mode := info.Mode(); {
	case mode.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, rel+"/", 0o755
	case mode.IsRegular():
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), fileMode(mode)
	case mode&fs.ModeSymlink != 0:
		target, err := p.linkTarget(full, rel)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
	default:
		return fmt.Errorf("%s: unsupported file type %s (list it in %s to skip it)", rel, mode.Type(), IgnoreFile)
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	return p.copyFile(full, rel, hdr.Size)
}

func (p *packer) copyFile(full, rel string, size int64) error {
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(p.tw, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if n != size {
		return fmt.Errorf("%s: file changed size while packing", rel)
	}
	return nil
}

// linkTarget returns the target to store for the symlink at full, relative
// to the link's directory. A link that resolves outside the root is an error.
func (p *packer) linkTarget(full, rel string) (string, error) {
	target, err := os.Readlink(full)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(full)
	abs := target
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(dir, target)
	}
	if !within(p.root, filepath.Clean(abs)) {
		return "", fmt.Errorf("%s: symlink to %q points outside %s", rel, target, p.root)
	}
	// The lexical check is not enough when the target passes through other
	// links; where the target exists, check where it really is.
	if real, err := filepath.EvalSymlinks(full); err == nil && !within(p.root, real) {
		return "", fmt.Errorf("%s: symlink to %q resolves outside %s", rel, target, p.root)
	}
	if filepath.IsAbs(target) {
		if target, err = filepath.Rel(dir, abs); err != nil {
			return "", err
		}
	}
	return filepath.ToSlash(target), nil
}

// within reports whether path is root or below it (both cleaned, absolute).
func within(root, path string) bool {
	return path == root || strings.HasPrefix(path, root+string(filepath.Separator))
}

// fileMode keeps only whether a file is executable.
func fileMode(m fs.FileMode) int64 {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}
