package bucket

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func openFileBucket(t *testing.T, dir string) Bucket {
	t.Helper()
	b, loc, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if loc.Scheme != "file" || loc.Bucket != dir {
		t.Fatalf("location = %+v, want file %s", loc, dir)
	}
	return b
}

func TestFileConformance(t *testing.T) {
	runConformance(t, func(t *testing.T) Bucket { return openFileBucket(t, t.TempDir()) })
}

func TestFileOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh", "bucket")
	b := openFileBucket(t, dir)
	put(t, b, "k", "v")
	data, err := os.ReadFile(filepath.Join(dir, "k"))
	if err != nil || string(data) != "v" {
		t.Fatalf("file on disk = %q, %v; want %q", data, err, "v")
	}
	if got, want := b.URL("a b/c#1"), "file://"+dir+"/a%20b/c%231"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	loc, err := Parse(b.URL("a b/c#1"))
	if err != nil || loc.Bucket != dir+"/a b/c#1" {
		t.Errorf("Parse(URL) = %+v, %v; want bucket %s/a b/c#1", loc, err, dir)
	}
}

func TestFileSymlinkEscape(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "filelink")); err != nil {
		t.Fatal(err)
	}
	b := openFileBucket(t, dir)
	ctx := context.Background()

	if r, err := b.NewReader(ctx, "link/secret"); err == nil {
		r.Close()
		t.Fatal("NewReader through a symlink out of the root succeeded")
	}
	if r, err := b.NewReader(ctx, "filelink"); err == nil {
		r.Close()
		t.Fatal("NewReader of a symlink to a file outside the root succeeded")
	}
	if _, err := b.Attrs(ctx, "link/secret"); err == nil {
		t.Fatal("Attrs through a symlink out of the root succeeded")
	}
	if err := b.Put(ctx, "link/planted", strings.NewReader("x"), false); err == nil {
		t.Fatal("Put through a symlink out of the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file appeared outside the root: %v", err)
	}
	objs, err := b.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(objs) != 0 {
		t.Fatalf("List shows objects outside the root: %+v", objs)
	}
}

func TestFileSkipsTempFiles(t *testing.T) {
	dir := t.TempDir()
	b := openFileBucket(t, dir)
	put(t, b, "d/keep", "k")
	if err := os.WriteFile(filepath.Join(dir, "d", tempPrefix+"abc"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := b.List(context.Background(), "d/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if diff := cmp.Diff([]string{"d/keep"}, keys); diff != "" {
		t.Errorf("List keys (-want +got):\n%s", diff)
	}
	if err := b.Put(context.Background(), "d/"+tempPrefix+"x", strings.NewReader("x"), false); !errors.Is(err, ErrBadKey) {
		t.Errorf("Put of a reserved name error = %v, want ErrBadKey", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 { // keep + the planted temp file; Put left nothing behind
		t.Errorf("directory holds %d entries, want 2", len(entries))
	}
}

func TestFileCanceledPut(t *testing.T) {
	dir := t.TempDir()
	b := openFileBucket(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Put(ctx, "k", strings.NewReader("v"), false); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put error = %v, want context.Canceled", err)
	}
	if _, err := b.Attrs(context.Background(), "k"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Attrs after canceled Put = %v, want ErrNotExist", err)
	}
}
