package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/imagetest"
)

// TestPutChecksTheWholeArchive: a pushed archive is kept only if loading
// it gives exactly the image it is pushed as; a refused one stores nothing.
func TestPutChecksTheWholeArchive(t *testing.T) {
	img := func(seed string, tags ...string) imagetest.Image {
		return imagetest.Image{Seed: seed, RepoTags: tags, Layers: [][]byte{imagetest.Layer(seed, 5000), imagetest.Layer(seed+"2", 100)}}
	}
	legacy, oci := imagetest.Options{}, imagetest.Options{OCI: true}
	tests := []struct {
		name   string
		opts   imagetest.Options
		images []imagetest.Image
		push   string // the name pushed under
		id     string // the id claimed; "" means the first image's
		err    string // "" means kept
	}{
		{name: "good, untagged", opts: legacy, images: []imagetest.Image{img("a")}, push: "cloudml/octave:7"},
		{name: "good, tagged with its name", opts: legacy, images: []imagetest.Image{img("a", "cloudml/octave:7")}, push: "cloudml/octave:7"},
		{name: "good, OCI layout", opts: oci, images: []imagetest.Image{img("a", "cloudml/octave:7")}, push: "cloudml/octave:7"},
		{name: "name spelt in full", opts: legacy, images: []imagetest.Image{img("a", "debian:12")}, push: "docker.io/library/debian:12"},
		{name: "no tag means latest", opts: legacy, images: []imagetest.Image{img("a", "myimg:latest")}, push: "myimg"},
		{name: "registry name", opts: legacy, images: []imagetest.Image{img("a", "localhost:5000/x/y:1")}, push: "localhost:5000/x/y:1"},
		{name: "two images", opts: legacy, images: []imagetest.Image{img("a"), img("b")}, push: "x:1",
			err: "the archive holds 2 images; push exactly one"},
		{name: "wrong id", opts: legacy, images: []imagetest.Image{img("a")}, push: "x:1", id: imagetest.ID(img("b")),
			err: "the archive's image is " + imagetest.ID(img("a")) + ", not " + imagetest.ID(img("b")) + " as pushed"},
		{name: "foreign tag", opts: legacy, images: []imagetest.Image{img("a", "debian:12")}, push: "cloudml/octave:7",
			err: `the archive tags the image "debian:12"; an image pushed as "cloudml/octave:7" may carry no other name (loading it would retag "debian:12" on every node)`},
		{name: "its name and a foreign tag", opts: legacy, images: []imagetest.Image{img("a", "x:1", "debian:12")}, push: "x:1",
			err: `the archive tags the image "debian:12"`},
		{name: "another tag of its repository", opts: legacy, images: []imagetest.Image{img("a", "x:2")}, push: "x:1",
			err: `the archive tags the image "x:2"`},
		{name: "foreign tag, OCI", opts: oci, images: []imagetest.Image{img("a", "debian:12")}, push: "x:1",
			err: `the archive tags the image "debian:12"`},
		{name: "pushed by digest, tagged", opts: legacy, images: []imagetest.Image{img("a", "x:1")},
			push: "x@sha256:" + strings.Repeat("a", 64), err: `the archive tags the image "x:1"`},
		{name: "layer not as its config says", opts: legacy, images: []imagetest.Image{{Seed: "a", BadLayer: true}}, push: "x:1",
			err: "layer 1"},
		{name: "config missing", opts: legacy, images: []imagetest.Image{{Seed: "a", NoConfig: true}}, push: "x:1",
			err: "the image config"},
		{name: "no manifest", opts: imagetest.Options{NoManifest: true}, images: []imagetest.Image{img("a")}, push: "x:1",
			err: "it has no manifest.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir)
			data, ids := imagetest.Archive(tt.opts, tt.images...)
			id := tt.id
			if id == "" {
				id = ids[0]
			}
			_, err := s.Put(context.Background(), Info{Name: tt.push, ID: id}, bytes.NewReader(data))
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Put = %v, want the archive kept", err)
				}
				if info, ok := s.Lookup(tt.push); !ok || info.ID != id {
					t.Errorf("Lookup(%s) = %v, %v", tt.push, info, ok)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Put = %v, want ErrInvalid saying %q", err, tt.err)
			}
			if got := files(t, dir); len(got) != 0 {
				t.Errorf("a refused archive left %v", got)
			}
			if _, ok := s.Lookup(tt.push); ok || s.HasID(id) {
				t.Errorf("a refused archive is kept")
			}
		})
	}
}

// TestPutFollowsArchiveLinks: docker save links a layer it has written
// already instead of writing it twice; a link to nothing is a missing layer.
func TestPutFollowsArchiveLinks(t *testing.T) {
	layer := imagetest.Layer("dup", 1000)
	sum := sha256.Sum256(layer)
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	config := []byte(`{"rootfs":{"type":"layers","diff_ids":["` + diffID + `","` + diffID + `"]}}`)
	sum = sha256.Sum256(config)
	id := hex.EncodeToString(sum[:])
	build := func(linkTarget string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		put := func(name string, data []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
			tw.Write(data)
		}
		put("l1/layer.tar", layer)
		tw.WriteHeader(&tar.Header{Name: "l2/layer.tar", Typeflag: tar.TypeSymlink, Linkname: linkTarget})
		put(id+".json", config)
		put("manifest.json", []byte(`[{"Config":"`+id+`.json","RepoTags":null,"Layers":["l1/layer.tar","l2/layer.tar"]}]`))
		tw.Close()
		return buf.Bytes()
	}
	s := newStore(t, t.TempDir())
	if _, err := s.Put(context.Background(), Info{Name: "x:1", ID: "sha256:" + id}, bytes.NewReader(build("../l1/layer.tar"))); err != nil {
		t.Errorf("Put of an archive with a linked layer = %v", err)
	}
	s = newStore(t, t.TempDir())
	_, err := s.Put(context.Background(), Info{Name: "x:1", ID: "sha256:" + id}, bytes.NewReader(build("../l3/layer.tar")))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "layer 2 (l2/layer.tar) is missing") {
		t.Errorf("Put with a dangling layer link = %v, want the layer missing", err)
	}
}

// TestPutAcceptsARealDockerSave: what the node's docker save writes passes
// the check under its own name, and is refused under another.
func TestPutAcceptsARealDockerSave(t *testing.T) {
	d := testutil.HostDocker(t)
	ref, id := testutil.ImportImage(t, d, "cloudml-test/imagestore", testutil.OneFileRootfs(64<<10))
	rc, err := d.ImageSave(t.Context(), []string{ref})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, t.TempDir())
	if _, err := s.Put(t.Context(), Info{Name: "cloudml-test/other:1", ID: id}, bytes.NewReader(data)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put of docker save %s under another name = %v, want ErrInvalid", ref, err)
	}
	if _, err := s.Put(t.Context(), Info{Name: ref, ID: id}, bytes.NewReader(data)); err != nil {
		t.Errorf("Put of docker save %s = %v", ref, err)
	}
}
