package atomicfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if err != nil || string(data) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("file = %q (%v), mode %v; want \"new\", 0600", data, err, fi.Mode().Perm())
	}
	onlyFile(t, dir, "f.json")
}

func TestFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := errors.New("not what it claims")
	if _, err := Write(context.Background(), path, strings.NewReader("new"), 0o644, func(*os.File) error { return bad }); !errors.Is(err, bad) {
		t.Errorf("Write with a failing check = %v, want %v", err, bad)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, path, strings.NewReader("new"), 0o644, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with an ended ctx = %v, want context.Canceled", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "old" {
		t.Errorf("file = %q after failed writes, want \"old\"", data)
	}
	onlyFile(t, dir, "f")
}

func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != name {
		t.Errorf("dir holds %v (%v), want only %s", entries, err, name)
	}
}

func TestSymlinkReplaces(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	for _, target := range []string{"/a", "/b", "/b"} {
		if err := Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("link = %q, %v; want %q", got, err, target)
		}
		onlyFile(t, dir, "current")
	}
}
