package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ctr "github.com/cloudml/cloudml/agent/container"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// imageFake is swarmFake that also keeps the images nodes upload and
// serves them back with FetchImage.
type imageFake struct {
	*swarmFake
	uploads  map[string]*cloudmlv1.ImageHeader // by name; guarded by mu
	archives map[string][]byte
	refusals []string
}

func newImageFake(t *testing.T) (*imageFake, fakeDial) {
	f := &imageFake{swarmFake: &swarmFake{
		fakeCoord: newFakeCoordWith(200 * time.Millisecond),
		pushes:    map[string]chan *cloudmlv1.SessionResponse{}, claims: map[refKey]string{},
		stages: map[string]*cloudmlv1.ReportStageRequest{},
	}, uploads: map[string]*cloudmlv1.ImageHeader{}, archives: map[string][]byte{}}
	return f, f.serve(t, f)
}

func (f *imageFake) UploadImage(stream cloudmlv1.AgentService_UploadImageServer) error {
	if _, err := f.node(stream.Context()); err != nil {
		return err
	}
	hdr, data, refusal, err := testutil.ReceiveImage(stream)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if refusal != "" {
		f.refusals = append(f.refusals, refusal)
		f.notify()
	}
	if hdr != nil {
		f.uploads[hdr.GetName()], f.archives[hdr.GetName()] = hdr, data
		f.notify()
	}
	return stream.SendAndClose(&cloudmlv1.UploadImageResponse{BytesReceived: int64(len(data))})
}

func (f *imageFake) FetchImage(req *cloudmlv1.FetchImageRequest, stream cloudmlv1.AgentService_FetchImageServer) error {
	if _, err := f.node(stream.Context()); err != nil {
		return err
	}
	f.mu.Lock()
	hdr, data := f.uploads[req.GetImage()], f.archives[req.GetImage()]
	f.mu.Unlock()
	if hdr == nil {
		return status.Errorf(codes.NotFound, "no copy of %s", req.GetImage())
	}
	return testutil.SendImage(stream, hdr, data, 1<<20)
}

// TestImageDistributionThroughSession drives a real agent on the host's
// Docker: ExportImage uploads an image, StageJob fetches it back after it
// was removed, and a job whose image is nowhere fails its staging.
func TestImageDistributionThroughSession(t *testing.T) {
	d := testutil.HostDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, id := testutil.ImportImage(t, d, "cloudml-test/img", testutil.OneFileRootfs(6))

	f, dial := newImageFake(t)
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.Docker, cfg.SwarmRoot = "unix:///var/run/docker.sock", t.TempDir()
	startAgent(t, cfg)
	const node = "node-1"

	f.sendTo(t, node, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_ExportImage{ExportImage: &cloudmlv1.ExportImage{Image: ref}}})
	f.wait(t, "the image upload", func() bool { return f.uploads[ref] != nil })
	if got := f.uploads[ref].GetId(); got != id {
		t.Fatalf("uploaded id %s, want %s", got, id)
	}

	missing := ref + "-missing"
	f.sendTo(t, node, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_ExportImage{ExportImage: &cloudmlv1.ExportImage{Image: missing}}})
	f.wait(t, "the refused upload", func() bool { return len(f.refusals) == 1 })
	if !strings.Contains(f.refusals[0], missing) {
		t.Errorf("refusal %q does not name %s", f.refusals[0], missing)
	}

	if _, err := d.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	stage := func(job, img, imgID string) *cloudmlv1.ReportStageRequest {
		t.Helper()
		f.mu.Lock()
		delete(f.stages, node)
		f.mu.Unlock()
		f.sendTo(t, node, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_StageJob{StageJob: &cloudmlv1.StageJob{JobId: job, Image: img, ImageId: imgID}}})
		f.wait(t, "the stage report of "+job, func() bool { return f.stages[node] != nil })
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.stages[node]
	}
	if rep := stage("j1", ref, id); rep.GetError() != "" || rep.GetImageSource() != ctr.ImageCoordinator {
		t.Fatalf("stage report %v, want success with image from the coordinator", rep)
	}
	if insp, err := d.ImageInspect(ctx, ref); err != nil || insp.ID != id {
		t.Fatalf("after staging the image is %q, %v; want %s", insp.ID, err, id)
	}
	if rep := stage("j2", ref, id); rep.GetError() != "" || rep.GetImageSource() != ctr.ImageLocal {
		t.Errorf("second stage report %v, want success with the local image", rep)
	}
	rep := stage("j3", missing, "")
	for _, want := range []string{`image "` + missing + `" is not on this node`, "pulling it failed", "cloudml-client submit --image " + missing} {
		if !strings.Contains(rep.GetError(), want) {
			t.Errorf("stage error %q does not say %q", rep.GetError(), want)
		}
	}
}
