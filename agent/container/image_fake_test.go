package container

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeImageDocker is a stub daemon with images. Its archives are
// "name|id|" followed by padding; loading one tags name with id.
type fakeImageDocker struct {
	*stubDocker
	mu       sync.Mutex
	images   map[string]string // ref → id
	registry map[string]string // what pulls find: ref → id
	loads    int
	pulls    int
	loadedN  int // bytes docker load read
}

func newFakeImageDocker() *fakeImageDocker {
	return &fakeImageDocker{stubDocker: newStub(), images: map[string]string{}, registry: map[string]string{}}
}

func (d *fakeImageDocker) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.images[ref]
	if !ok && strings.HasPrefix(ref, "sha256:") { // by id
		for _, v := range d.images {
			if v == ref {
				id, ok = v, true
			}
		}
	}
	if !ok {
		return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("no such image: %s", ref))
	}
	return image.InspectResponse{ID: id, Size: 3 << 20}, nil
}

func (d *fakeImageDocker) ImageLoad(_ context.Context, r io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return image.LoadResponse{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loads++
	d.loadedN += len(b)
	parts := strings.SplitN(string(b), "|", 3)
	if len(parts) != 3 {
		return image.LoadResponse{JSON: true, Body: io.NopCloser(strings.NewReader(`{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}`))}, nil
	}
	d.images[parts[0]] = parts[1]
	return image.LoadResponse{JSON: true, Body: io.NopCloser(strings.NewReader(`{"stream":"Loaded image: ` + parts[0] + `\n"}`))}, nil
}

func (d *fakeImageDocker) ImageSave(_ context.Context, refs []string, _ ...client.ImageSaveOption) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return io.NopCloser(bytes.NewReader(archive(refs[0], d.images[refs[0]], 5<<19))), nil
}

func (d *fakeImageDocker) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pulls++
	id, ok := d.registry[ref]
	if !ok {
		return io.NopCloser(strings.NewReader(`{"status":"Pulling"}` + "\n" + `{"errorDetail":{"message":"pull access denied for ` + ref + `"},"error":"pull access denied"}`)), nil
	}
	d.images[ref] = id
	return io.NopCloser(strings.NewReader(`{"status":"Downloaded newer image"}`)), nil
}

func (d *fakeImageDocker) ImageTag(_ context.Context, src, dst string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.images[dst] = src
	return nil
}

func archive(ref, id string, pad int) []byte {
	return append([]byte(ref+"|"+id+"|"), bytes.Repeat([]byte{'x'}, pad)...)
}

// fakeCoordinator serves FetchImage from archives by image name.
type fakeCoordinator struct {
	mu       sync.Mutex
	archives map[string][]byte
	fetches  int
	release  chan struct{} // if set, a fetch waits for it to close
	started  chan struct{} // gets a value when a fetch starts
}

func (c *fakeCoordinator) fetch(ctx context.Context, ref string) (ImageStream, error) {
	c.mu.Lock()
	c.fetches++
	a, ok := c.archives[ref]
	c.mu.Unlock()
	if c.started != nil {
		c.started <- struct{}{}
	}
	if c.release != nil {
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return &sliceStream{err: status.Error(codes.NotFound, "no node has image "+ref)}, nil
	}
	s := &sliceStream{msgs: []*cloudmlv1.FetchImageResponse{{Part: &cloudmlv1.FetchImageResponse_Header{Header: &cloudmlv1.ImageHeader{Name: ref, Id: "sha256:coord"}}}}}
	for len(a) > 0 {
		n := min(len(a), 100000)
		s.msgs = append(s.msgs, &cloudmlv1.FetchImageResponse{Part: &cloudmlv1.FetchImageResponse_Chunk{Chunk: a[:n]}})
		a = a[n:]
	}
	return s, nil
}

// sliceStream replays msgs, then err (io.EOF when nil).
type sliceStream struct {
	msgs []*cloudmlv1.FetchImageResponse
	err  error
}

func (s *sliceStream) Recv() (*cloudmlv1.FetchImageResponse, error) {
	if len(s.msgs) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

// recordUpload is an UploadImage stream that keeps what it is sent.
type recordUpload struct {
	msgs   []*cloudmlv1.UploadImageRequest
	closed bool
}

func (u *recordUpload) Send(m *cloudmlv1.UploadImageRequest) error {
	u.msgs = append(u.msgs, &cloudmlv1.UploadImageRequest{Part: cloneChunk(m).Part})
	return nil
}

func cloneChunk(m *cloudmlv1.UploadImageRequest) *cloudmlv1.UploadImageRequest {
	if c := m.GetChunk(); c != nil {
		return &cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Chunk{Chunk: bytes.Clone(c)}}
	}
	return m
}

func (u *recordUpload) CloseAndRecv() (*cloudmlv1.UploadImageResponse, error) {
	u.closed = true
	return &cloudmlv1.UploadImageResponse{}, nil
}
