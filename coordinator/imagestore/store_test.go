package imagestore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/imagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeArchive is a `docker save` archive (legacy layout) of one untagged
// image whose config holds seed, with a layer of about 300 KB.
func fakeArchive(t *testing.T, seed string) (id string, data []byte) {
	t.Helper()
	data, ids := imagetest.Archive(imagetest.Options{}, imagetest.Image{Seed: seed, Layers: [][]byte{imagetest.Layer(seed, 300000)}})
	return ids[0], data
}

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(Config{Dir: dir, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// files lists dir's entries.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestPutOpenAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id, data := fakeArchive(t, `{"config":1}`)
	size, err := s.Put(context.Background(), Info{Name: "cloudml/octave:7", ID: id}, bytes.NewReader(data))
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Put = %d, %v; want %d", size, err, len(data))
	}
	want := Info{Name: "cloudml/octave:7", ID: id, Size: int64(len(data))}
	for _, st := range []*Store{s, newStore(t, dir)} { // and after a restart
		got, ok := st.Lookup("cloudml/octave:7")
		if !ok || !cmp.Equal(got, want) || !st.HasID(id) {
			t.Fatalf("Lookup = %+v, %v; want %+v", got, ok, want)
		}
		rc, info, err := st.Open("cloudml/octave:7")
		if err != nil {
			t.Fatal(err)
		}
		back, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(back, data) || info != want {
			t.Fatalf("Open: %d bytes, %+v; want the %d bytes put", len(back), info, len(data))
		}
	}
	if diff := cmp.Diff([]string{strings.TrimPrefix(id, "sha256:") + ".tar", "names.json"}, files(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if _, _, err := s.Open("other:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of an unknown name: %v, want ErrNotFound", err)
	}
}

func TestPutAcceptsOCILayout(t *testing.T) {
	s := newStore(t, t.TempDir())
	data, ids := imagetest.Archive(imagetest.Options{OCI: true}, imagetest.Image{Seed: "oci", RepoTags: []string{"a:1"}})
	id := ids[0]
	if _, err := s.Put(context.Background(), Info{Name: "a:1", ID: id}, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put of an OCI layout archive: %v", err)
	}
}

type failingReader struct{ after []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.after) == 0 {
		return 0, errors.New("connection lost")
	}
	n := copy(p, f.after)
	f.after = f.after[n:]
	return n, nil
}

func TestPutRejectsAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id, data := fakeArchive(t, `{"x":1}`)
	otherID, _ := fakeArchive(t, `{"x":2}`)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		info    Info
		r       io.Reader
		invalid bool
	}{
		{"bad id", context.Background(), Info{Name: "a:1", ID: "sha256:../../etc/passwd"}, bytes.NewReader(data), true},
		{"short id", context.Background(), Info{Name: "a:1", ID: "sha256:abc"}, bytes.NewReader(data), true},
		{"path name", context.Background(), Info{Name: "../a", ID: id}, bytes.NewReader(data), true},
		{"empty name", context.Background(), Info{Name: "", ID: id}, bytes.NewReader(data), true},
		{"wrong id", context.Background(), Info{Name: "a:1", ID: otherID}, bytes.NewReader(data), true},
		{"not a tar", context.Background(), Info{Name: "a:1", ID: id}, strings.NewReader("hello"), true},
		{"broken stream", context.Background(), Info{Name: "a:1", ID: id}, &failingReader{after: data[:1000]}, false},
		{"cancelled", cancelled, Info{Name: "a:1", ID: id}, bytes.NewReader(data), false},
	} {
		_, err := s.Put(tc.ctx, tc.info, tc.r)
		if err == nil || errors.Is(err, ErrInvalid) != tc.invalid {
			t.Errorf("%s: Put = %v, want an error (invalid: %v)", tc.name, err, tc.invalid)
		}
		if got := files(t, dir); len(got) != 0 {
			t.Errorf("%s: left %v behind", tc.name, got)
		}
		if _, ok := s.Lookup("a:1"); ok || s.HasID(id) {
			t.Errorf("%s: the image is kept after a failed Put", tc.name)
		}
	}
}

// waitInflight waits until a Put of id is writing.
func waitInflight(t *testing.T, s *Store, id string) {
	t.Helper()
	for {
		s.mu.Lock()
		_, busy := s.inflight[id]
		s.mu.Unlock()
		if busy {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatal("no Put in flight")
		default:
			runtime.Gosched()
		}
	}
}

func TestConcurrentPutsOfOneID(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id, data := fakeArchive(t, `{"shared":1}`)

	// The first Put of the id fails half way; the second, which waited,
	// then writes it; a third, waiting for the second, reads nothing.
	pr1, pw1 := io.Pipe()
	pr2, pw2 := io.Pipe()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	sizes := make([]int64, 3)
	wg.Go(func() { sizes[0], errs[0] = s.Put(context.Background(), Info{Name: "a:1", ID: id}, pr1) })
	waitInflight(t, s, id)
	wg.Go(func() { sizes[1], errs[1] = s.Put(context.Background(), Info{Name: "b:1", ID: id}, pr2) })
	pw1.Write(data[:512])
	pw1.CloseWithError(errors.New("client went away"))
	pw2.Write(data[:1024]) // the second Put now writes
	wg.Go(func() {
		sizes[2], errs[2] = s.Put(context.Background(), Info{Name: "c:1", ID: id}, &failingReader{})
	})
	pw2.Write(data[1024:])
	pw2.Close()
	wg.Wait()
	if errs[0] == nil {
		t.Errorf("first Put succeeded on a broken stream")
	}
	for i := 1; i < 3; i++ {
		if errs[i] != nil || sizes[i] != int64(len(data)) {
			t.Errorf("Put %d = %d, %v; want %d", i, sizes[i], errs[i], len(data))
		}
	}
	for _, name := range []string{"b:1", "c:1"} {
		if info, ok := s.Lookup(name); !ok || info.ID != id {
			t.Errorf("Lookup(%s) = %+v, %v", name, info, ok)
		}
	}
	if diff := cmp.Diff([]string{strings.TrimPrefix(id, "sha256:") + ".tar", "names.json"}, files(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestRetagRemovesTheReplacedArchive(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id1, data1 := fakeArchive(t, `{"v":1}`)
	id2, data2 := fakeArchive(t, `{"v":2}`)
	ctx := context.Background()
	if _, err := s.Put(ctx, Info{Name: "m:latest", ID: id1}, bytes.NewReader(data1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(Info{Name: "keep:1", ID: id1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Info{Name: "m:latest", ID: id2}, bytes.NewReader(data2)); err != nil {
		t.Fatal(err)
	}
	if !s.HasID(id1) {
		t.Fatal("an archive another name needs was removed")
	}
	if err := s.Tag(Info{Name: "keep:1", ID: id2}); err != nil {
		t.Fatal(err)
	}
	if s.HasID(id1) {
		t.Error("an archive no name needs is still kept")
	}
	if diff := cmp.Diff([]string{strings.TrimPrefix(id2, "sha256:") + ".tar", "names.json"}, files(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if err := s.Tag(Info{Name: "x:1", ID: id1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tag to a removed id: %v, want ErrNotFound", err)
	}
}

func TestNewCleansUp(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id, data := fakeArchive(t, `{"c":1}`)
	if _, err := s.Put(context.Background(), Info{Name: "a:1", ID: id}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/.tmp-image-123", []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir + "/" + strings.TrimPrefix(id, "sha256:") + ".tar"); err != nil {
		t.Fatal(err)
	}
	s = newStore(t, dir)
	if _, ok := s.Lookup("a:1"); ok {
		t.Error("a name whose archive is gone is still known")
	}
	if diff := cmp.Diff([]string{"names.json"}, files(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestDeleteAndList(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id1, data1 := fakeArchive(t, `{"d":1}`)
	id2, data2 := fakeArchive(t, `{"d":2}`)
	ctx := context.Background()
	for _, p := range []struct {
		name, id string
		data     []byte
	}{{"b:1", id1, data1}, {"a:1", id1, data1}, {"c:1", id2, data2}} {
		if _, err := s.Put(ctx, Info{Name: p.name, ID: p.id}, bytes.NewReader(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	size1, size2 := int64(len(data1)), int64(len(data2))
	want := []Info{{Name: "a:1", ID: id1, Size: size1}, {Name: "b:1", ID: id1, Size: size1}, {Name: "c:1", ID: id2, Size: size2}}
	if diff := cmp.Diff(want, s.List()); diff != "" {
		t.Fatalf("List (-want +got):\n%s", diff)
	}
	// A reader that opened c:1 before the delete reads it to the end.
	rc, _, err := s.Open("c:1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	steps := []struct {
		name  string
		freed int64
		left  []string
	}{
		{"a:1", 0, []string{hexOf(id1) + ".tar", hexOf(id2) + ".tar", "names.json"}}, // b:1 still needs it
		{"c:1", size2, []string{hexOf(id1) + ".tar", "names.json"}},
		{"b:1", size1, []string{"names.json"}},
	}
	for _, st := range steps {
		info, freed, err := s.Delete(st.name)
		if err != nil || info.Name != st.name || freed != st.freed {
			t.Fatalf("Delete(%s) = %+v, %d, %v; want freed %d", st.name, info, freed, err, st.freed)
		}
		sort.Strings(st.left)
		if diff := cmp.Diff(st.left, files(t, dir)); diff != "" {
			t.Errorf("after deleting %s, files (-want +got):\n%s", st.name, diff)
		}
	}
	if back, _ := io.ReadAll(rc); !bytes.Equal(back, data2) {
		t.Errorf("an open reader got %d bytes after the delete, want %d", len(back), len(data2))
	}
	if _, _, err := s.Delete("c:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if got := newStore(t, dir).List(); len(got) != 0 {
		t.Errorf("after a restart the store lists %+v, want nothing", got)
	}
}

// An archive no name points at (a crash between writing and naming it)
// is removed at start.
func TestNewRemovesUnnamedArchives(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	id1, data1 := fakeArchive(t, `{"n":1}`)
	id2, data2 := fakeArchive(t, `{"n":2}`)
	if _, err := s.Put(context.Background(), Info{Name: "named:1", ID: id1}, bytes.NewReader(data1)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, hexOf(id2)+".tar"), data2, 0o644); err != nil {
		t.Fatal(err)
	}
	s = newStore(t, dir)
	if s.HasID(id2) || !s.HasID(id1) {
		t.Errorf("after a restart: unnamed kept %v, named kept %v; want false, true", s.HasID(id2), s.HasID(id1))
	}
	if diff := cmp.Diff([]string{hexOf(id1) + ".tar", "names.json"}, files(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func hexOf(id string) string { return strings.TrimPrefix(id, "sha256:") }

// TestOwnerIsRecorded: the index keeps who pushed a name, and an index
// without owners (older coordinators) reads as it is.
func TestOwnerIsRecorded(t *testing.T) {
	dir := t.TempDir()
	id, data := fakeArchive(t, `{"owned":1}`)
	legacy := `{"old:1": "` + id + `"}`
	s := newStore(t, dir)
	if _, err := s.Put(context.Background(), Info{Name: "mine:1", ID: id, Owner: "alice"}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(Info{Name: "anon:1", ID: id}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"anon:1": "`+id+`"`) || !strings.Contains(string(raw), `"owner": "alice"`) {
		t.Errorf("index:\n%s\nwant anon:1 as a bare id and mine:1 with its owner", raw)
	}
	s = newStore(t, dir)
	if info, ok := s.Lookup("mine:1"); !ok || info.Owner != "alice" || info.ID != id {
		t.Errorf("after reopening, mine:1 = %+v, %v; want owner alice", info, ok)
	}
	if err := os.WriteFile(filepath.Join(dir, indexFile), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	s = newStore(t, dir)
	if info, ok := s.Lookup("old:1"); !ok || info.ID != id || info.Owner != "" {
		t.Errorf("an index of bare ids: old:1 = %+v, %v", info, ok)
	}
}
