package container

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func newImagesFor(t *testing.T, d *fakeImageDocker, c *fakeCoordinator) *Images {
	return NewImages(ImagesConfig{Docker: d, Fetch: c.fetch, Logger: testutil.Logger(t)})
}

func TestEnsureImage(t *testing.T) {
	const ref = "foo:1"
	tests := []struct {
		name     string
		local    string // id the node has, "" none
		want     string // StageJob.image_id
		coord    bool   // the coordinator has a copy
		registry bool
		// coordArchiveID and coordArchiveRef, when set, are what the
		// coordinator's archive really holds (its header says sha256:coord).
		coordArchiveID, coordArchiveRef string
		source                          string
		wantID                          string
		fetches                         int
		pulls                           int
		errHas                          []string
	}{
		{name: "local", local: "sha256:coord", source: ImageLocal, wantID: "sha256:coord"},
		{name: "local any id", local: "sha256:old", want: "", source: ImageLocal, wantID: "sha256:old"},
		{name: "fetched", coord: true, source: ImageCoordinator, wantID: "sha256:coord", fetches: 1},
		{name: "id mismatch fetches", local: "sha256:old", want: "sha256:coord", coord: true,
			source: ImageCoordinator, wantID: "sha256:coord", fetches: 1},
		{name: "not found pulls", registry: true, source: ImageRegistry, wantID: "sha256:reg", fetches: 1, pulls: 1},
		{name: "nowhere", fetches: 1, pulls: 1, errHas: []string{`image "foo:1" is not on this node`,
			"the coordinator has no copy", "pull access denied", "cloudml-client submit --image foo:1"}},
		{name: "mismatch and nowhere fails", local: "sha256:old", want: "sha256:new", wantID: "sha256:old", fetches: 1, pulls: 1,
			errHas: []string{`image "foo:1" on this node is sha256:old, not the sha256:new the job runs`}},
		{name: "pulled image is another", registry: true, want: "sha256:new", fetches: 1, pulls: 1,
			errHas: []string{"the registry's foo:1 is image sha256:reg, not sha256:new"}},
		{name: "coordinator offers another id", coord: true, want: "sha256:pinned", fetches: 1,
			errHas: []string{"the coordinator offers image sha256:coord under this name, but the job runs sha256:pinned"}},
		{name: "archive holds another image", coord: true, coordArchiveID: "sha256:evil", want: "sha256:coord", fetches: 1,
			errHas: []string{"the coordinator's archive loaded foo:1 as image sha256:evil, not sha256:coord: refusing it"}},
		{name: "archive tags another name", coord: true, coordArchiveRef: "debian:12", want: "sha256:coord",
			source: ImageCoordinator, wantID: "sha256:coord", fetches: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeImageDocker()
			if tt.local != "" {
				d.images[ref] = tt.local
			}
			if tt.registry {
				d.registry[ref] = "sha256:reg"
			}
			c := &fakeCoordinator{archives: map[string][]byte{}}
			if tt.coord {
				c.archives[ref] = archive(firstNonEmpty(tt.coordArchiveRef, ref), firstNonEmpty(tt.coordArchiveID, "sha256:coord"), 250000)
			}
			src, err := newImagesFor(t, d, c).Ensure(t.Context(), ref, tt.want)
			if tt.errHas != nil {
				if err == nil {
					t.Fatalf("Ensure = %q, want an error", src)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
			} else if err != nil || src != tt.source {
				t.Fatalf("Ensure = %q, %v; want %q", src, err, tt.source)
			}
			if got := d.images[ref]; tt.wantID != "" && got != tt.wantID {
				t.Errorf("image id after Ensure = %q, want %q", got, tt.wantID)
			}
			if c.fetches != tt.fetches || d.pulls != tt.pulls {
				t.Errorf("fetches, pulls = %d, %d; want %d, %d", c.fetches, d.pulls, tt.fetches, tt.pulls)
			}
			if tt.coord && tt.fetches > 0 && tt.errHas == nil && d.loadedN != len(c.archives[ref]) {
				t.Errorf("docker load read %d bytes, want %d", d.loadedN, len(c.archives[ref]))
			}
		})
	}
}

func TestEnsureImageNoDocker(t *testing.T) {
	im := NewImages(ImagesConfig{Fetch: func(context.Context, string) (ImageStream, error) {
		t.Error("fetch called on a node without docker")
		return nil, errors.New("unexpected")
	}})
	if src, err := im.Ensure(t.Context(), "foo:1", ""); src != "" || err != nil {
		t.Errorf("Ensure without docker = %q, %v; want \"\", nil", src, err)
	}
}

func TestEnsureImageTruncatedStream(t *testing.T) {
	d := newFakeImageDocker()
	broken := status.Error(codes.Unavailable, "connection reset")
	fetch := func(context.Context, string) (ImageStream, error) {
		return &sliceStream{err: broken, msgs: []*cloudmlv1.FetchImageResponse{
			{Part: &cloudmlv1.FetchImageResponse_Header{Header: &cloudmlv1.ImageHeader{Name: "foo:1", Id: "sha256:a"}}},
			{Part: &cloudmlv1.FetchImageResponse_Chunk{Chunk: []byte("foo:1|sha")}},
		}}, nil
	}
	im := NewImages(ImagesConfig{Docker: d, Fetch: fetch, Logger: testutil.Logger(t)})
	_, err := im.Ensure(t.Context(), "foo:1", "")
	if !errors.Is(err, broken) {
		t.Fatalf("Ensure with a broken stream = %v, want it to wrap %v", err, broken)
	}
	if d.pulls != 0 {
		t.Errorf("pulled %d times after a partial fetch, want 0", d.pulls)
	}
}

// A coordinator that stops sending mid-image ends the fetch after the
// stall time with an error that says so, instead of hanging the staging.
func TestEnsureImageStalledStream(t *testing.T) {
	d := newFakeImageDocker()
	fetch := func(ctx context.Context, _ string) (ImageStream, error) {
		return &stallStream{ctx: ctx, msgs: []*cloudmlv1.FetchImageResponse{
			{Part: &cloudmlv1.FetchImageResponse_Header{Header: &cloudmlv1.ImageHeader{Name: "foo:1", Id: "sha256:a"}}},
			{Part: &cloudmlv1.FetchImageResponse_Chunk{Chunk: []byte("foo:1|sha")}},
		}}, nil
	}
	im := NewImages(ImagesConfig{Docker: d, Fetch: fetch, Stall: time.Second, Logger: testutil.Logger(t)})
	_, err := im.Ensure(t.Context(), "foo:1", "")
	if !errors.Is(err, errStalled) || !strings.Contains(err.Error(), "after 9 bytes") {
		t.Fatalf("Ensure with a stalled stream = %v, want a stall after 9 bytes", err)
	}
	if d.pulls != 0 || d.images["foo:1"] != "" {
		t.Errorf("after a stalled fetch: %d pulls, image %q; want neither", d.pulls, d.images["foo:1"])
	}
}

// stallStream replays msgs, then blocks until its ctx ends, as a gRPC
// stream from a hung server does.
type stallStream struct {
	ctx  context.Context
	msgs []*cloudmlv1.FetchImageResponse
}

func (s *stallStream) Recv() (*cloudmlv1.FetchImageResponse, error) {
	if len(s.msgs) > 0 {
		m := s.msgs[0]
		s.msgs = s.msgs[1:]
		return m, nil
	}
	<-s.ctx.Done()
	return nil, status.FromContextError(s.ctx.Err()).Err()
}

func TestEnsureImageConcurrentShareOneFetch(t *testing.T) {
	const n = 5
	d := newFakeImageDocker()
	c := &fakeCoordinator{archives: map[string][]byte{"foo:1": archive("foo:1", "sha256:coord", 3<<20)},
		release: make(chan struct{}), started: make(chan struct{}, n)}
	im := newImagesFor(t, d, c)
	type result struct {
		src string
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			src, err := im.Ensure(t.Context(), "foo:1", "sha256:coord")
			results <- result{src, err}
		}()
	}
	<-c.started
	deadline := time.Now().Add(10 * time.Second)
	for {
		im.mu.Lock()
		joins := im.joins
		im.mu.Unlock()
		if joins == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Ensure calls joined the fetch", joins, n)
		}
		time.Sleep(time.Millisecond)
	}
	close(c.release)
	for range n {
		if r := <-results; r.err != nil || r.src != ImageCoordinator {
			t.Errorf("Ensure = %q, %v; want %q", r.src, r.err, ImageCoordinator)
		}
	}
	if c.fetches != 1 || d.loads != 1 {
		t.Errorf("fetches, loads = %d, %d; want 1, 1", c.fetches, d.loads)
	}
}

func TestExportImage(t *testing.T) {
	d := newFakeImageDocker()
	d.images["foo:1"] = "sha256:abc"
	up := &recordUpload{}
	im := newImagesFor(t, d, &fakeCoordinator{})
	if err := im.Export(t.Context(), "foo:1", func(context.Context) (ImageUpload, error) { return up, nil }); err != nil {
		t.Fatal(err)
	}
	if !up.closed || len(up.msgs) < 2 {
		t.Fatalf("upload closed %v with %d messages, want a header and chunks", up.closed, len(up.msgs))
	}
	wantHdr := &cloudmlv1.ImageHeader{Name: "foo:1", Id: "sha256:abc", Size: 3 << 20}
	if diff := cmp.Diff(wantHdr, up.msgs[0].GetHeader(), protocmp.Transform()); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	var got []byte
	var sizes []int
	for _, m := range up.msgs[1:] {
		got = append(got, m.GetChunk()...)
		sizes = append(sizes, len(m.GetChunk()))
	}
	want := archive("foo:1", "sha256:abc", 5<<19)
	if !bytes.Equal(got, want) {
		t.Errorf("uploaded %d bytes that differ from the %d-byte archive", len(got), len(want))
	}
	if diff := cmp.Diff([]int{1 << 20, 1 << 20, len(want) - 2<<20}, sizes); diff != "" {
		t.Errorf("chunk sizes (-want +got):\n%s", diff)
	}
}

func TestExportMissingImage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		docker Docker
		want   string
	}{
		{"missing", newFakeImageDocker(), `this node's docker does not have image "foo:1"`},
		{"no docker", nil, "no docker daemon"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := &recordUpload{}
			im := NewImages(ImagesConfig{Docker: tt.docker, Logger: testutil.Logger(t)})
			err := im.Export(t.Context(), "foo:1", func(context.Context) (ImageUpload, error) { return up, nil })
			if err == nil {
				t.Fatal("Export of a missing image succeeded")
			}
			if len(up.msgs) != 1 || !strings.Contains(up.msgs[0].GetError(), tt.want) || !up.closed {
				t.Errorf("upload = %v (closed %v), want one error message saying %q", up.msgs, up.closed, tt.want)
			}
		})
	}
}
