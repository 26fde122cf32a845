package archive

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeTree creates files under dir: a path ending in "/" is a directory,
// a value starting with "->" a symlink, "x:" an executable file.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		full := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		v := files[n]
		var err error
		switch {
		case strings.HasSuffix(n, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(strings.TrimPrefix(v, "->"), full)
		case strings.HasPrefix(v, "x:"):
			err = os.WriteFile(full, []byte(strings.TrimPrefix(v, "x:")), 0o700)
		default:
			err = os.WriteFile(full, []byte(v), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readTree describes the tree under dir the way writeTree takes it, with
// modes: "f0644:content", "f0755:content", "d0755", "->target".
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			got[rel+"/"] = "d" + modeString(info.Mode())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "->" + target
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = "f" + modeString(info.Mode()) + ":" + string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func modeString(m fs.FileMode) string {
	return fmt.Sprintf("%04o", m&fs.ModePerm)
}

func pack(t *testing.T, dir string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	digest, err := Pack(context.Background(), dir, &buf)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes(), digest
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"train.m":           "disp(1)\n",
		"run.sh":            "x:#!/bin/sh\necho hi\n",
		"lib/util.m":        "function y = f(x)\n",
		"lib/deep/more.m":   "% more\n",
		"empty/":            "",
		"link.m":            "->lib/util.m",
		"lib/up":            "->..",
		"dangling":          "->missing/file",
		"lib/deep/abs-in.m": "->" + filepath.Join(src, "train.m"),
		".git/HEAD":         "ref: refs/heads/main\n",
		"sub/.git/config":   "[core]\n",
		".cloudmlignore":    "# nothing\n",
	})
	data, digest := pack(t, src)
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Fatalf("digest = %q, want sha256:<64 hex>", digest)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := Extract(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := map[string]string{
		"train.m":           "f0644:disp(1)\n",
		"run.sh":            "f0755:#!/bin/sh\necho hi\n",
		"lib/":              "d0755",
		"lib/util.m":        "f0644:function y = f(x)\n",
		"lib/deep/":         "d0755",
		"lib/deep/more.m":   "f0644:% more\n",
		"lib/deep/abs-in.m": "->../../train.m",
		"empty/":            "d0755",
		"link.m":            "->lib/util.m",
		"lib/up":            "->..",
		"dangling":          "->missing/file",
		"sub/":              "d0755",
		".cloudmlignore":    "f0644:# nothing\n",
	}
	if diff := cmp.Diff(want, readTree(t, dst)); diff != "" {
		t.Errorf("extracted tree (-want +got):\n%s", diff)
	}
}

func TestPackDeterministic(t *testing.T) {
	files := map[string]string{
		"a.m":       "a\n",
		"b/c.m":     "c\n",
		"b/d/e.txt": "e\n",
		"x.sh":      "x:#!/bin/sh\n",
	}
	src1, src2 := t.TempDir(), t.TempDir()
	writeTree(t, src1, files)
	data1, d1 := pack(t, src1)
	data2, d2 := pack(t, src1)
	if d1 != d2 || !bytes.Equal(data1, data2) {
		t.Fatalf("packing twice gave %s and %s", d1, d2)
	}

	// Another copy with other mtimes and permission bits gives the same bytes.
	writeTree(t, src2, files)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, p := range []string{"a.m", "b", "b/c.m", "b/d/e.txt"} {
		if err := os.Chtimes(filepath.Join(src2, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src2, "a.m"), 0o664); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src2, "x.sh"), 0o744); err != nil {
		t.Fatal(err)
	}
	_, d3 := pack(t, src2)
	if d3 != d1 {
		t.Errorf("digest after touching mtimes and modes = %s, want %s", d3, d1)
	}

	// A change of content changes the digest.
	if err := os.WriteFile(filepath.Join(src2, "a.m"), []byte("A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, d4 := pack(t, src2); d4 == d1 {
		t.Errorf("digest did not change with content: %s", d4)
	}
	// And so does the executable bit.
	if err := os.Chmod(filepath.Join(src1, "a.m"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, d5 := pack(t, src1); d5 == d1 {
		t.Errorf("digest did not change with the executable bit: %s", d5)
	}
}

func TestPackIgnore(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		".cloudmlignore":  "# comment\n\n*.log\n/build\ncache/\ndata/*.csv\n!keep.log\n\\#hash\n",
		"train.m":         "t\n",
		"run.log":         "l\n",
		"keep.log":        "k\n",
		"sub/x.log":       "l\n",
		"sub/build":       "not at root, kept\n",
		"build/out.bin":   "b\n",
		"cache/a":         "c\n",
		"sub/cache/b":     "c\n",
		"notdir/cache":    "a file named cache, kept\n",
		"data/a.csv":      "csv\n",
		"data/a.txt":      "txt\n",
		"data/deep/b.csv": "deep csv, kept: * does not cross /\n",
		"#hash":           "h\n",
	})
	data, _ := pack(t, src)
	dst := t.TempDir()
	if err := Extract(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range readTree(t, dst) {
		got = append(got, name)
	}
	sort.Strings(got)
	want := []string{
		".cloudmlignore", "data/", "data/a.txt", "data/deep/", "data/deep/b.csv",
		"keep.log", "notdir/", "notdir/cache", "sub/", "sub/build", "train.m",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packed names (-want +got):\n%s", diff)
	}
}

func TestPackBadIgnorePattern(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{".cloudmlignore": "[\n", "a": "a"})
	_, err := Pack(context.Background(), src, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), ".cloudmlignore:1") {
		t.Fatalf("Pack = %v, want an error naming .cloudmlignore:1", err)
	}
}

func TestPackRejectsOutsideSymlinks(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret": "s"})
	for name, target := range map[string]string{
		"absolute": filepath.Join(outside, "secret"),
		"relative": "../../../../../../../../etc/passwd",
		"updir":    "../sub/../..",
	} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, map[string]string{"ok.m": "x", "sub/": "", "sub/bad": "->" + target})
			_, err := Pack(context.Background(), src, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "sub/bad") {
				t.Fatalf("Pack = %v, want an error naming sub/bad", err)
			}
		})
	}
	t.Run("through in-tree link", func(t *testing.T) {
		// "here" points at the root, so "here/.." is lexically "." but is
		// really the root's parent.
		src := t.TempDir()
		writeTree(t, src, map[string]string{"here": "->.", "sneaky": "->here/.."})
		_, err := Pack(context.Background(), src, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "sneaky") {
			t.Fatalf("Pack = %v, want an error naming sneaky", err)
		}
	})
}

func TestPackFile(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.m": "a\n", "b/c.m": "c\n"})
	_, want := pack(t, src)
	tmp := t.TempDir()
	path, digest, size, err := PackFile(context.Background(), src, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if digest != want {
		t.Errorf("digest = %s, want %s", digest, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size || size == 0 {
		t.Errorf("size = %d, file has %d", size, fi.Size())
	}
	if filepath.Dir(path) != tmp {
		t.Errorf("path %s not in %s", path, tmp)
	}

	// On failure no temp file is left behind.
	if _, _, _, err := PackFile(context.Background(), filepath.Join(src, "missing"), tmp); err == nil {
		t.Fatal("PackFile of a missing dir succeeded")
	}
	entries, _ := os.ReadDir(tmp)
	if len(entries) != 1 {
		t.Errorf("temp dir has %d entries, want 1", len(entries))
	}
}

func TestPackCancelled(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.m": "a"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, src, &bytes.Buffer{}); err == nil {
		t.Fatal("Pack with a cancelled context succeeded")
	}
}
