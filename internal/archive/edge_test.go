package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestExtractEdges covers what ordinary archives do not: parents several
// levels deep with no directory entries, empty files, and modes that must
// not depend on the extracting process's umask.
func TestExtractEdges(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dst := t.TempDir()
	data := buildArchive(t, reg("a/b/c/deep.m", "deep"), reg("empty", ""), dir("d/"))
	if err := Extract(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := map[string]string{
		"a/": "d0755", "a/b/": "d0755", "a/b/c/": "d0755", "a/b/c/deep.m": "f0644:deep",
		"empty": "f0644:",
		"d/":    "d0755",
	}
	// Parents made on the way (mkdirs) follow the umask; the entries
	// themselves must not.
	got := readTree(t, dst)
	for _, p := range []string{"a/", "a/b/", "a/b/c/"} {
		delete(want, p)
		delete(got, p)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extracted tree under umask 077 (-want +got):\n%s", diff)
	}
}

// TestExtractSizeLimit checks the cap on the bytes written, at its
// boundary (with a small limit) and at its real value (a header claiming
// more than MaxExtractSize is refused before a byte of it is read).
func TestExtractSizeLimit(t *testing.T) {
	body := func(n int) string { return strings.Repeat("x", n) }
	extract := func(limit int64, sizes ...int) error {
		var es []entry
		for i, n := range sizes {
			es = append(es, reg(string(rune('a'+i)), body(n)))
		}
		gz, err := gzip.NewReader(bytes.NewReader(buildArchive(t, es...)))
		if err != nil {
			t.Fatal(err)
		}
		x := &extractor{root: t.TempDir(), tr: tar.NewReader(gz), limit: limit}
		for {
			hdr, err := x.tr.Next()
			if err != nil {
				return nil
			}
			if err := x.file(hdr, filepath.Join(x.root, hdr.Name)); err != nil {
				return err
			}
		}
	}
	if err := extract(10, 4, 6); err != nil {
		t.Errorf("files totalling exactly the limit: %v", err)
	}
	if err := extract(10, 4, 7); !errors.Is(err, ErrTooLarge) {
		t.Errorf("files totalling one byte over the limit: %v, want ErrTooLarge", err)
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: MaxExtractSize + 1}); err != nil {
		t.Fatal(err)
	}
	tw.Flush() // the body never comes: the header alone must be refused
	gz.Close()
	if err := Extract(context.Background(), &buf, t.TempDir()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a header claiming %d bytes: %v, want ErrTooLarge", MaxExtractSize+1, err)
	}
}

func TestPackBadIgnorePatternNamesItsLine(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{".cloudmlignore": "# ok\n*.tmp\n[\n", "a": "a"})
	_, err := Pack(context.Background(), src, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), ".cloudmlignore:3") {
		t.Fatalf("Pack = %v, want an error naming .cloudmlignore:3", err)
	}
}
