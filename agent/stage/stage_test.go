package stage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/agent/internal/membucket"
	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tgz builds a tar.gz of name → body (directories end in "/") in order.
func tgz(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}
		if strings.HasSuffix(e[0], "/") {
			hdr = &tar.Header{Name: e[0], Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e[1])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// tree returns the regular files under dir as rel → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// entries lists the cache dir's names, to prove nothing partial is left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	names := []string{}
	for _, d := range des {
		names = append(names, d.Name())
	}
	sort.Strings(names)
	return names
}

func newCache(t *testing.T, b *membucket.Bucket) *Cache {
	return &Cache{Dir: t.TempDir(), Logger: testutil.Logger(t), Open: b.Opener()}
}

func TestStageArchiveCachedByDigest(t *testing.T) {
	b := membucket.New("b")
	data := tgz(t, [2]string{"train.m", "disp(1)\n"}, [2]string{"lib/", ""}, [2]string{"lib/util.m", "x=1;\n"})
	b.Set("code/a.tar.gz", data)
	c := newCache(t, b)
	src := &cloudmlv1.Source{Url: "mem://b/code/a.tar.gz", Digest: digest(data)}

	dir, err := c.Stage(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"train.m": "disp(1)\n", "lib/util.m": "x=1;\n"}
	if diff := cmp.Diff(want, tree(t, dir)); diff != "" {
		t.Errorf("staged tree (-want +got):\n%s", diff)
	}
	if got, want := filepath.Base(dir), "sha256-"+strings.TrimPrefix(src.Digest, "sha256:"); got != want {
		t.Errorf("dir = %q, want %q", got, want)
	}
	again, err := c.Stage(context.Background(), src)
	if err != nil || again != dir {
		t.Fatalf("second Stage = %q, %v; want %q", again, err, dir)
	}
	if n, size := c.Stats(); n != 1 || size != int64(len(data)) {
		t.Errorf("Stats = %d downloads, %d bytes; want 1, %d", n, size, len(data))
	}
	if got := b.Reads(); got != 1 {
		t.Errorf("bucket reads = %d, want 1", got)
	}
}

func TestStageArchiveFailures(t *testing.T) {
	good := tgz(t, [2]string{"a", "1"})
	hostile := tgz(t, [2]string{"ok.txt", "fine"}, [2]string{"../../evil", "pwned"})
	tests := []struct {
		name   string
		object []byte // nil: no object
		digest string
		want   error
		msg    string
	}{
		{"mismatch", good, digest([]byte("other")), ErrDigestMismatch, "has sha256:"},
		{"hostile", hostile, digest(hostile), archive.ErrUnsafePath, "extract"},
		{"missing", nil, digest(good), bucket.ErrNotExist, `object "code/x.tar.gz" does not exist in mem://b/`},
		{"bad digest", good, "md5:abc", ErrBadDigest, "sha256:<64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := membucket.New("b")
			if tt.object != nil {
				b.Set("code/x.tar.gz", tt.object)
			}
			c := newCache(t, b)
			_, err := c.Stage(context.Background(), &cloudmlv1.Source{Url: "mem://b/code/x.tar.gz", Digest: tt.digest})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Stage error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if got := entries(t, c.Dir); len(got) != 0 {
				t.Errorf("cache dir holds %v after a failed stage, want nothing", got)
			}
		})
	}
}

func TestStagePrefix(t *testing.T) {
	b := membucket.New("b")
	b.Set("data/train/a.csv", []byte("1,2\n"))
	b.Set("data/train/sub/b.csv", []byte("3,4\n"))
	b.Set("data/train/", nil) // a directory placeholder
	b.Set("data/trainer.csv", []byte("not mine"))
	c := newCache(t, b)
	src := &cloudmlv1.Source{Url: "mem://b/data/train"}

	dir, err := c.Stage(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.csv": "1,2\n", "sub/b.csv": "3,4\n"}
	if diff := cmp.Diff(want, tree(t, dir)); diff != "" {
		t.Errorf("staged tree (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(filepath.Base(dir), "prefix-") {
		t.Errorf("dir %q is not a prefix- dir", dir)
	}
	if again, err := c.Stage(context.Background(), src); err != nil || again != dir {
		t.Fatalf("second Stage = %q, %v; want %q", again, err, dir)
	}
	if n, _ := c.Stats(); n != 2 {
		t.Errorf("downloads = %d, want 2 (second stage is cached)", n)
	}

	b.Set("data/train/a.csv", []byte("changed\n"))
	changed, err := c.Stage(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if changed == dir {
		t.Errorf("changed prefix staged into the old dir %q", dir)
	}
	if got := tree(t, changed)["a.csv"]; got != "changed\n" {
		t.Errorf("a.csv = %q after change", got)
	}
}

func TestStagePrefixSingleObject(t *testing.T) {
	b := membucket.New("b")
	b.Set("data/iris.csv", []byte("x\n"))
	c := newCache(t, b)
	dir, err := c.Stage(context.Background(), &cloudmlv1.Source{Url: "mem://b/data/iris.csv"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"iris.csv": "x\n"}, tree(t, dir)); diff != "" {
		t.Errorf("staged tree (-want +got):\n%s", diff)
	}
}

func TestStagePrefixHostileKeys(t *testing.T) {
	for _, key := range []string{"p/a/../../x", "p/../x", "p/./a", "p/a//b", "p//etc/passwd"} {
		t.Run(key, func(t *testing.T) {
			b := membucket.New("b")
			b.Set("p/ok", []byte("ok"))
			b.Set(key, []byte("evil"))
			c := newCache(t, b)
			_, err := c.Stage(context.Background(), &cloudmlv1.Source{Url: "mem://b/p"})
			if !errors.Is(err, archive.ErrUnsafePath) {
				t.Fatalf("Stage error = %v, want ErrUnsafePath", err)
			}
			if got := entries(t, c.Dir); len(got) != 0 {
				t.Errorf("cache dir holds %v, want nothing", got)
			}
		})
	}
}

func TestStagePrefixEmpty(t *testing.T) {
	b := membucket.New("b")
	c := newCache(t, b)
	_, err := c.Stage(context.Background(), &cloudmlv1.Source{Url: "mem://b/nothing"})
	if !errors.Is(err, bucket.ErrNotExist) {
		t.Fatalf("Stage error = %v, want ErrNotExist", err)
	}
	if got, want := err.Error(), "no objects under mem://b/nothing"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestStageConcurrentCallersShareOneDownload(t *testing.T) {
	b := membucket.New("b")
	data := tgz(t, [2]string{"run.sh", "echo hi\n"})
	b.Set("code/c.tar.gz", data)
	c := newCache(t, b)
	src := &cloudmlv1.Source{Url: "mem://b/code/c.tar.gz", Digest: digest(data)}

	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() { dirs[i], errs[i] = c.Stage(context.Background(), src) })
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("caller %d: %q, %v; want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
	if n, _ := c.Stats(); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
}

// TestStageFileBucket stages a real archive from the file:// backend, the
// way the client uploads it.
func TestStageFileBucket(t *testing.T) {
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "train.m"), []byte("disp(2)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	dg, err := archive.Pack(context.Background(), code, &buf)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ctx := context.Background()
	b, _, err := bucket.Open(ctx, "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := "code/" + strings.Replace(dg, ":", "-", 1) + ".tar.gz"
	if err := b.Put(ctx, key, &buf, true); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: t.TempDir(), Logger: testutil.Logger(t)}
	dir, err := c.Stage(ctx, &cloudmlv1.Source{Url: b.URL(key), Digest: dg})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"train.m": "disp(2)\n"}, tree(t, dir)); diff != "" {
		t.Errorf("staged tree (-want +got):\n%s", diff)
	}
	_, err = c.Stage(ctx, &cloudmlv1.Source{Url: b.URL("code/missing.tar.gz"), Digest: dg[:len(dg)-1] + "0"})
	if !errors.Is(err, bucket.ErrNotExist) {
		t.Errorf("missing archive: error = %v, want ErrNotExist", err)
	}
	// A directory of loose files is a prefix source.
	if err := b.Put(ctx, "data/x/1.txt", strings.NewReader("one"), true); err != nil {
		t.Fatal(err)
	}
	dir, err = c.Stage(ctx, &cloudmlv1.Source{Url: b.URL("data/x")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"1.txt": "one"}, tree(t, dir)); diff != "" {
		t.Errorf("staged prefix (-want +got):\n%s", diff)
	}
}
