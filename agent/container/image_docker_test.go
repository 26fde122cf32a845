package container

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/image"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// imageServer is a coordinator that keeps one uploaded image archive in
// memory and serves it back with FetchImage.
type imageServer struct {
	cloudmlv1.UnimplementedAgentServiceServer
	mu      sync.Mutex
	hdr     *cloudmlv1.ImageHeader
	archive []byte
	refusal string // the error of the last refused upload
}

func (s *imageServer) UploadImage(stream cloudmlv1.AgentService_UploadImageServer) error {
	hdr, data, refusal, err := testutil.ReceiveImage(stream)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if refusal != "" {
		s.refusal = refusal
	}
	if hdr != nil {
		s.hdr, s.archive = hdr, data
	}
	return stream.SendAndClose(&cloudmlv1.UploadImageResponse{BytesReceived: int64(len(data))})
}

func (s *imageServer) FetchImage(req *cloudmlv1.FetchImageRequest, stream cloudmlv1.AgentService_FetchImageServer) error {
	s.mu.Lock()
	hdr, data := s.hdr, s.archive
	s.mu.Unlock()
	if hdr == nil || hdr.GetName() != req.GetImage() {
		return status.Errorf(codes.NotFound, "no copy of %s", req.GetImage())
	}
	return testutil.SendImage(stream, hdr, data, 256<<10)
}

func startImageServer(t *testing.T, srv *imageServer) cloudmlv1.AgentServiceClient {
	return cloudmlv1.NewAgentServiceClient(testutil.ConnectGRPC(t, func(s *grpc.Server) { cloudmlv1.RegisterAgentServiceServer(s, srv) }))
}

func TestImageRoundTripThroughDocker(t *testing.T) {
	d := testutil.HostDocker(t)
	ref, id := testutil.ImportImage(t, d, "cloudml-test/img", testutil.OneFileRootfs(3<<20)) // several chunks of the export
	srv := &imageServer{}
	coord := startImageServer(t, srv)
	im := NewImages(ImagesConfig{Docker: d, Logger: testutil.Logger(t),
		Fetch: func(ctx context.Context, ref string) (ImageStream, error) {
			return coord.FetchImage(ctx, &cloudmlv1.FetchImageRequest{Image: ref})
		}})
	open := func(ctx context.Context) (ImageUpload, error) { return coord.UploadImage(ctx) }
	ctx := t.Context()

	if err := im.Export(ctx, ref, open); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	hdr, size := srv.hdr, len(srv.archive)
	srv.mu.Unlock()
	if hdr.GetName() != ref || hdr.GetId() != id || size < 3<<20 {
		t.Fatalf("uploaded header %v with %d bytes; want %s, %s and at least 3 MiB", hdr, size, ref, id)
	}

	if _, err := d.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImageInspect(ctx, ref); !isNotFound(err) {
		t.Fatalf("image still there after removal: %v", err)
	}
	src, err := im.Ensure(ctx, ref, id)
	if err != nil || src != ImageCoordinator {
		t.Fatalf("Ensure = %q, %v; want %q", src, err, ImageCoordinator)
	}
	insp, err := d.ImageInspect(ctx, ref)
	if err != nil || insp.ID != id {
		t.Fatalf("after Ensure the image is %q, %v; want id %s", insp.ID, err, id)
	}
	if src, err := im.Ensure(ctx, ref, id); err != nil || src != ImageLocal {
		t.Errorf("second Ensure = %q, %v; want %q", src, err, ImageLocal)
	}

	missing := ref + "-missing"
	err = im.Export(ctx, missing, open)
	if !errors.Is(err, ErrImageNotFound) {
		t.Errorf("Export of a missing image = %v, want ErrImageNotFound", err)
	}
	srv.mu.Lock()
	refusal := srv.refusal
	srv.mu.Unlock()
	if !strings.Contains(refusal, missing) {
		t.Errorf("coordinator got refusal %q, want one naming %s", refusal, missing)
	}
}

// TestEnsureRefusesAnotherImageOnRealDocker: the coordinator announces one
// image id and streams the archive of another; the node loads it, sees the
// mismatch and fails staging, and the job's name does not get the image.
func TestEnsureRefusesAnotherImageOnRealDocker(t *testing.T) {
	d := testutil.HostDocker(t)
	refA, idA := testutil.ImportImage(t, d, "cloudml-test/img", testutil.OneFileRootfs(1<<10))
	_, idB := testutil.ImportImage(t, d, "cloudml-test/img", testutil.OneFileRootfs(1<<10))
	ctx := t.Context()
	for _, save := range []string{refA, idA} { // tagged, then untagged
		rc, err := d.ImageSave(ctx, []string{save})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		job := "cloudml-test/job:" + idB[len(idB)-8:]
		srv := &imageServer{hdr: &cloudmlv1.ImageHeader{Name: job, Id: idB, Size: int64(len(data))}, archive: data}
		coord := startImageServer(t, srv)
		im := NewImages(ImagesConfig{Docker: d, Logger: testutil.Logger(t),
			Fetch: func(ctx context.Context, ref string) (ImageStream, error) {
				return coord.FetchImage(ctx, &cloudmlv1.FetchImageRequest{Image: ref})
			}})
		src, err := im.Ensure(ctx, job, idB)
		if err == nil || !strings.Contains(err.Error(), "not "+idB+": refusing it") {
			t.Errorf("Ensure of an archive of %s announced as %s = %q, %v; want a refusal", save, idB, src, err)
		}
		if insp, err := d.ImageInspect(ctx, job); !isNotFound(err) {
			t.Errorf("%s names image %s after the refusal (%v), want no such image", job, insp.ID, err)
		}
	}
}
