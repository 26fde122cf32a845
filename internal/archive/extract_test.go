package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// entry is one member of a hand-built archive.
type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func special(typ byte, name string) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: 1, Devminor: 3}}
}

func buildArchive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractRejectsHostileArchives(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries func(outside string) []entry
		naming  string // the entry the error must name
	}{
		{"dotdot", func(string) []entry { return []entry{reg("ok", "x"), reg("../evil", "bad")} }, "../evil"},
		{"absolute", func(o string) []entry { return []entry{reg(filepath.Join(o, "abs"), "bad")} }, "abs"},
		{"dotdot inside", func(string) []entry { return []entry{reg("a/../../evil", "bad")} }, "a/../../evil"},
		{"deep dotdot", func(string) []entry { return []entry{dir("a/"), reg("a/b/../../../outside/evil", "bad")} }, "a/b/../../../outside/evil"},
		{"absolute symlink then write through it", func(o string) []entry {
			return []entry{symlink("link", o), reg("link/passwd", "bad")}
		}, "link"},
		{"symlink to /etc", func(string) []entry { return []entry{symlink("link", "/etc"), reg("link/passwd", "bad")} }, "link"},
		{"symlink up", func(string) []entry { return []entry{symlink("up", "../.."), reg("up/evil", "bad")} }, "up"},
		{"nested symlink up", func(string) []entry { return []entry{dir("a/"), symlink("a/up", "../../outside")} }, "a/up"},
		{"write through in-tree symlink", func(string) []entry {
			return []entry{dir("d/"), symlink("l", "d"), reg("l/file", "bad")}
		}, "l/file"},
		{"hardlink to /etc/passwd", func(string) []entry { return []entry{hardlink("h", "/etc/passwd")} }, "h"},
		{"hardlink escaping", func(string) []entry { return []entry{hardlink("h", "../outside/secret")} }, "h"},
		{"hardlink through symlink", func(string) []entry {
			return []entry{symlink("s", "."), reg("f", "x"), hardlink("h", "s/f")}
		}, "h"},
		{"char device", func(string) []entry { return []entry{special(tar.TypeChar, "dev/null")} }, "dev/null"},
		{"block device", func(string) []entry { return []entry{special(tar.TypeBlock, "sda")} }, "sda"},
		{"fifo", func(string) []entry { return []entry{special(tar.TypeFifo, "pipe")} }, "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			writeTree(t, outside, map[string]string{"secret": "s"})
			dst := filepath.Join(parent, "dst")
			data := buildArchive(t, tc.entries(outside)...)

			err := Extract(context.Background(), bytes.NewReader(data), dst)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Extract = %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), tc.naming) {
				t.Errorf("error %q does not name %q", err, tc.naming)
			}
			names, _ := os.ReadDir(parent)
			var got []string
			for _, n := range names {
				got = append(got, n.Name())
			}
			if diff := cmp.Diff([]string{"dst", "outside"}, got); diff != "" {
				t.Errorf("parent of dst changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"secret": "f0600:s"}, readTree(t, outside)); diff != "" {
				t.Errorf("outside dir changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExtractAcceptsOrdinaryArchives(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "new", "dst")
	exe := reg("bin/run", "#!/bin/sh\n")
	exe.hdr.Mode = 0o4777 // setuid and world-writable are dropped
	data := buildArchive(t,
		dir("./"),
		dir("bin/"),
		exe,
		reg("a/../b.txt", "b"), // cleans to b.txt
		reg("data/x.csv", "1,2\n"),
		symlink("latest", "data/x.csv"),
		symlink("data/self", "."),
		symlink("data/root", ".."),
		hardlink("copy.csv", "data/x.csv"),
		symlink("replaced", "b.txt"), // a later regular file replaces it
		reg("replaced", "new"),       // and must not write through it
		entry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "hi"}}},
	)
	if err := Extract(context.Background(), bytes.NewReader(data), dst); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := map[string]string{
		"bin/":       "d0755",
		"bin/run":    "f0755:#!/bin/sh\n",
		"b.txt":      "f0644:b",
		"data/":      "d0755",
		"data/x.csv": "f0644:1,2\n",
		"data/self":  "->.",
		"data/root":  "->..",
		"latest":     "->data/x.csv",
		"copy.csv":   "f0644:1,2\n",
		"replaced":   "f0644:new",
	}
	if diff := cmp.Diff(want, readTree(t, dst)); diff != "" {
		t.Errorf("extracted tree (-want +got):\n%s", diff)
	}
}

func TestExtractBadInput(t *testing.T) {
	dst := t.TempDir()
	if err := Extract(context.Background(), strings.NewReader("not gzip"), dst); err == nil {
		t.Error("Extract of garbage succeeded")
	}
	data := buildArchive(t, reg("a", "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Extract(ctx, bytes.NewReader(data), dst); !errors.Is(err, context.Canceled) {
		t.Errorf("Extract with a cancelled context = %v, want context.Canceled", err)
	}
	// A file where a directory entry's parent should be is a plain error.
	data = buildArchive(t, reg("f", "x"), reg("f/g", "y"))
	err := Extract(context.Background(), bytes.NewReader(data), t.TempDir())
	if err == nil || errors.Is(err, ErrUnsafePath) {
		t.Errorf("Extract over a file parent = %v, want a non-unsafe error", err)
	}
}

func TestExtractIntoExistingTree(t *testing.T) {
	// Extracting the same archive twice (a retried staging) succeeds.
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.m": "a", "l": "->a.m", "d/b.m": "b"})
	data, _ := pack(t, src)
	dst := t.TempDir()
	for i := 0; i < 2; i++ {
		if err := Extract(context.Background(), bytes.NewReader(data), dst); err != nil {
			t.Fatalf("Extract #%d: %v", i+1, err)
		}
	}
	var got []string
	for n := range readTree(t, dst) {
		got = append(got, n)
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"a.m", "d/", "d/b.m", "l"}, got); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}
