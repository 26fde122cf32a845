package bucket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// factory returns a fresh, empty bucket; the test's cleanup closes it.
type factory func(t *testing.T) Bucket

// runConformance runs the behaviour every Bucket implementation must share.
func runConformance(t *testing.T, newBucket factory) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newBucket(t)) })
	t.Run("IfAbsent", func(t *testing.T) { testIfAbsent(t, newBucket(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newBucket(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newBucket(t)) })
	t.Run("BadKeys", func(t *testing.T) { testBadKeys(t, newBucket(t)) })
	t.Run("Large", func(t *testing.T) { testLarge(t, newBucket(t)) })
	t.Run("SizeHints", func(t *testing.T) { testSizeHints(t, newBucket(t)) })
	t.Run("ConcurrentIfAbsent", func(t *testing.T) { testConcurrentIfAbsent(t, newBucket(t)) })
}

func put(t *testing.T, b Bucket, key, body string) {
	t.Helper()
	if err := b.Put(context.Background(), key, strings.NewReader(body), false); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, b Bucket, key string) string {
	t.Helper()
	r, err := b.NewReader(context.Background(), key)
	if err != nil {
		t.Fatalf("NewReader(%q): %v", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(data)
}

func testRoundTrip(t *testing.T, b Bucket) {
	ctx := context.Background()
	put(t, b, "dir/sub/hello.txt", "hello, world\n")
	if got, want := get(t, b, "dir/sub/hello.txt"), "hello, world\n"; got != want {
		t.Fatalf("content = %q, want %q", got, want)
	}
	a1, err := b.Attrs(ctx, "dir/sub/hello.txt")
	if err != nil {
		t.Fatalf("Attrs: %v", err)
	}
	if a1.Key != "dir/sub/hello.txt" || a1.Size != 13 || a1.ETag == "" {
		t.Fatalf("Attrs = %+v, want key dir/sub/hello.txt, size 13, an etag", a1)
	}

	put(t, b, "dir/sub/hello.txt", "replaced, and longer\n")
	if got, want := get(t, b, "dir/sub/hello.txt"), "replaced, and longer\n"; got != want {
		t.Fatalf("content after overwrite = %q, want %q", got, want)
	}
	a2, err := b.Attrs(ctx, "dir/sub/hello.txt")
	if err != nil {
		t.Fatalf("Attrs: %v", err)
	}
	if a2.ETag == a1.ETag {
		t.Errorf("etag unchanged after overwrite: %q", a2.ETag)
	}

	put(t, b, "empty", "")
	if got := get(t, b, "empty"); got != "" {
		t.Errorf("empty object read back %q", got)
	}
}

func testIfAbsent(t *testing.T, b Bucket) {
	ctx := context.Background()
	if err := b.Put(ctx, "results/manifest.json", strings.NewReader("first"), true); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	err := b.Put(ctx, "results/manifest.json", strings.NewReader("second"), true)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Put error = %v, want ErrExists", err)
	}
	if got := get(t, b, "results/manifest.json"); got != "first" {
		t.Fatalf("content = %q after refused overwrite, want %q", got, "first")
	}
	objs, err := b.List(ctx, "results/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("List after refused overwrite = %+v, want one object", objs)
	}
}

func testMissing(t *testing.T, b Bucket) {
	ctx := context.Background()
	put(t, b, "file", "x")
	for _, key := range []string{"nope", "dir/nope", "file/below"} {
		if _, err := b.NewReader(ctx, key); !errors.Is(err, ErrNotExist) {
			t.Errorf("NewReader(%q) error = %v, want ErrNotExist", key, err)
		} else if !strings.Contains(err.Error(), key) {
			t.Errorf("NewReader(%q) error %q does not name the key", key, err)
		}
		if _, err := b.Attrs(ctx, key); !errors.Is(err, ErrNotExist) {
			t.Errorf("Attrs(%q) error = %v, want ErrNotExist", key, err)
		}
	}
}

func testList(t *testing.T, b Bucket) {
	ctx := context.Background()
	for _, k := range []string{"c", "b/2", "a/2", "a/10", "ab", "a/1", "a/deep/x"} {
		put(t, b, k, k)
	}
	keys := func(prefix string) []string {
		t.Helper()
		objs, err := b.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		out := []string{}
		for _, o := range objs {
			if o.Size != int64(len(o.Key)) {
				t.Errorf("List(%q): %s has size %d, want %d", prefix, o.Key, o.Size, len(o.Key))
			}
			out = append(out, o.Key)
		}
		return out
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/1", "a/10", "a/2", "a/deep/x", "ab", "b/2", "c"}},
		{"a/", []string{"a/1", "a/10", "a/2", "a/deep/x"}},
		{"a", []string{"a/1", "a/10", "a/2", "a/deep/x", "ab"}},
		{"a/1", []string{"a/1", "a/10"}},
		{"a/deep", []string{"a/deep/x"}},
		{"c", []string{"c"}},
		{"zzz", []string{}},
		{"zzz/", []string{}},
		{"c/", []string{}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, keys(tt.prefix)); diff != "" {
			t.Errorf("List(%q) keys (-want +got):\n%s", tt.prefix, diff)
		}
	}
}

func testBadKeys(t *testing.T, b Bucket) {
	ctx := context.Background()
	for _, key := range []string{"", "../x", "/abs", "a/../../b", "a/..", "./a", "a//b", "a/", "a\x00b"} {
		if err := b.Put(ctx, key, strings.NewReader("x"), false); !errors.Is(err, ErrBadKey) {
			t.Errorf("Put(%q) error = %v, want ErrBadKey", key, err)
		}
		if _, err := b.NewReader(ctx, key); !errors.Is(err, ErrBadKey) {
			t.Errorf("NewReader(%q) error = %v, want ErrBadKey", key, err)
		}
		if _, err := b.Attrs(ctx, key); !errors.Is(err, ErrBadKey) {
			t.Errorf("Attrs(%q) error = %v, want ErrBadKey", key, err)
		}
	}
	for _, prefix := range []string{"../", "/abs", "a/../b", "x\x00"} {
		if _, err := b.List(ctx, prefix); !errors.Is(err, ErrBadKey) {
			t.Errorf("List(%q) error = %v, want ErrBadKey", prefix, err)
		}
	}
	objs, err := b.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(objs) != 0 {
		t.Errorf("bad keys left objects behind: %+v", objs)
	}
}

// testSizeHints: WithSize only tunes the upload; a hint that is right,
// too small (a file that grew) or too large still stores exactly the bytes.
func testSizeHints(t *testing.T, b Bucket) {
	ctx := context.Background()
	for _, c := range []struct {
		key        string
		size, hint int64
	}{
		{"exact", 1000, 1000}, {"empty", 0, 0}, {"grew", 700 << 10, 10}, {"shrank", 10, 1 << 20},
	} {
		body := make([]byte, c.size)
		for i := range body {
			body[i] = byte(i * 7)
		}
		// A plain reader, so only the hint tells the size.
		if err := b.Put(ctx, c.key, WithSize(io.MultiReader(bytes.NewReader(body)), c.hint), true); err != nil {
			t.Fatalf("Put(%s): %v", c.key, err)
		}
		if got := get(t, b, c.key); got != string(body) {
			t.Errorf("%s: read %d bytes back, want the %d put", c.key, len(got), len(body))
		}
	}
}

func testLarge(t *testing.T, b Bucket) {
	ctx := context.Background()
	const size = 40 << 20
	src := io.LimitReader(rand.NewChaCha8([32]byte{7}), size)
	h := sha256.New()
	if err := b.Put(ctx, "big/blob.bin", io.TeeReader(src, h), true); err != nil {
		t.Fatalf("Put: %v", err)
	}
	want := h.Sum(nil)

	r, err := b.NewReader(ctx, "big/blob.bin")
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	defer r.Close()
	h.Reset()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("sha256 = %x, want %x", got, want)
	}
	a, err := b.Attrs(ctx, "big/blob.bin")
	if err != nil {
		t.Fatalf("Attrs: %v", err)
	}
	if a.Size != size {
		t.Errorf("Attrs size = %d, want %d", a.Size, size)
	}

	// A large write refused by ifAbsent must leave the object untouched.
	again := io.LimitReader(rand.NewChaCha8([32]byte{8}), size)
	if err := b.Put(ctx, "big/blob.bin", again, true); !errors.Is(err, ErrExists) {
		t.Fatalf("second large Put error = %v, want ErrExists", err)
	}
	after, err := b.Attrs(ctx, "big/blob.bin")
	if err != nil {
		t.Fatalf("Attrs: %v", err)
	}
	if after != a {
		t.Errorf("attrs changed by a refused write: %+v, was %+v", after, a)
	}
}

func testConcurrentIfAbsent(t *testing.T, b Bucket) {
	const writers = 8
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.NewReader(fmt.Sprintf("writer %d", i))
			errs[i] = b.Put(context.Background(), "once", body, true)
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrExists):
			t.Errorf("writer %d: error = %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	if got, want := get(t, b, "once"), fmt.Sprintf("writer %d", winner); got != want {
		t.Errorf("content = %q, want the winner's %q", got, want)
	}
}
