package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// inProcess is a real coordinator in this process (with nodes agents).
type inProcess struct {
	c *inproc.Cluster
}

func startCoordinator(t *testing.T) *inProcess {
	t.Helper()
	return startCluster(t, 0)
}

func startCluster(t *testing.T, nodes int) *inProcess {
	t.Helper()
	c, err := inproc.Start(inproc.Config{Dir: t.TempDir(), Nodes: nodes, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return &inProcess{c: c}
}

// run runs the client against the coordinator.
func (p *inProcess) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	r := runWith(t, p.c.DialOptions(), nil, args...)
	return r.code, r.stdout, r.stderr
}

// fetch fetches an image as a node would.
func (p *inProcess) fetch(t *testing.T, name string) (*cloudmlv1.ImageHeader, []byte, error) {
	t.Helper()
	tok, err := p.c.Token()
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := grpc.NewClient(inproc.Target, p.c.Dialer(), grpc.WithTransportCredentials(p.c.CertCreds(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	_, pair, err := testutil.RegisterNode(t, noCert, &cloudmlv1.RegisterRequest{JoinToken: tok, Hostname: "n", Slots: 1, Runtime: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(inproc.Target, p.c.Dialer(), grpc.WithTransportCredentials(p.c.CertCreds(pair)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := cloudmlv1.NewAgentServiceClient(conn).FetchImage(t.Context(), &cloudmlv1.FetchImageRequest{Image: name})
	if err != nil {
		return nil, nil, err
	}
	return testutil.ReadImage(stream)
}

func TestSubmitPushesTheLocalImage(t *testing.T) {
	d := testutil.HostDocker(t)
	rootfs, err := netns.BusyboxRootfs()
	testutil.NeedSystem(t, "busybox-static", err)
	ref, id := testutil.ImportImage(t, d, "cloudml-test/push", rootfs, "ENV PATH=/bin", `CMD ["sh"]`)
	p := startCoordinator(t)
	submit := func(image string, extra ...string) string {
		t.Helper()
		args := append([]string{"submit", "--name", "push", "--code", "file:///tmp/code", "--image", image}, extra...)
		code, out, errs := p.run(t, append(args, "--", "sh", "-c", "true")...)
		if code != ExitOK || !strings.HasPrefix(out, "push-") {
			t.Fatalf("submit --image %s: exit %d, stdout %q, stderr %q", image, code, out, errs)
		}
		return errs
	}

	errs := submit(ref)
	if !strings.Contains(errs, "pushed image "+ref+" ("+shortID(id)+")") {
		t.Errorf("first submit stderr %q does not report the push", errs)
	}
	hdr, archive, err := p.fetch(t, ref)
	if err != nil || hdr.GetId() != id || hdr.GetSize() != int64(len(archive)) || len(archive) == 0 {
		t.Fatalf("fetch %s: header %v, %d bytes, %v; want id %s", ref, hdr, len(archive), err, id)
	}
	// What a node fetches loads back as the same image.
	if _, err := d.ImageRemove(t.Context(), id, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := d.ImageLoad(t.Context(), bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("docker load of the fetched archive: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if info, err := d.ImageInspect(t.Context(), ref); err != nil || info.ID != id {
		t.Fatalf("after docker load: %s is %q, %v; want %s", ref, info.ID, err, id)
	}

	errs = submit(ref)
	if !strings.Contains(errs, "image "+ref+": already on the coordinator ("+shortID(id)+")") || strings.Contains(errs, "pushed image") {
		t.Errorf("second submit stderr %q; want already on the coordinator", errs)
	}

	// --push-image=false sends nothing: the coordinator does not know the tag.
	other := ref + "-nopush"
	if err := d.ImageTag(t.Context(), ref, other); err != nil {
		t.Fatal(err)
	}
	if errs := submit(other, "--push-image=false"); strings.Contains(errs, "image") {
		t.Errorf("submit --push-image=false printed %q", errs)
	}
	if _, _, err := p.fetch(t, other); status.Code(err) != codes.NotFound {
		t.Errorf("fetch of an image not pushed: %v, want NotFound", err)
	}
	// An image the local Docker lacks is not an error and says nothing.
	if errs := submit("cloudml-test/absent:" + shortID(id)); strings.Contains(errs, "image") {
		t.Errorf("submit of an image Docker lacks printed %q", errs)
	}
}

// fakeDocker has one image.
type fakeDocker struct{ id string }

func (f fakeDocker) ImageInspect(ctx context.Context, ref string, _ ...dockerclient.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: f.id, Size: 3}, nil
}

func (f fakeDocker) ImageSave(ctx context.Context, refs []string, _ ...dockerclient.ImageSaveOption) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("tar")), nil
}

func (f fakeDocker) Close() error { return nil }

// refusingJobs refuses every push.
type refusingJobs struct {
	cloudmlv1.UnimplementedJobServiceServer
}

func (refusingJobs) PushImage(s grpc.ClientStreamingServer[cloudmlv1.PushImageRequest, cloudmlv1.PushImageResponse]) error {
	s.Recv()
	return status.Error(codes.ResourceExhausted, "disk full")
}

func TestFailedPushSaysWhatToDo(t *testing.T) {
	docker := func(c *client.Config) {
		c.Docker = func() (client.DockerImages, error) { return fakeDocker{id: "sha256:" + strings.Repeat("a", 64)}, nil }
	}
	r := runWith(t, fakeServer(t, refusingJobs{}), docker, "submit", "--code", "file:///tmp/code", "--image", "x:1", "--", "true")
	if r.code != ExitError || !strings.Contains(r.stderr, "push image x:1 to the coordinator") || !strings.Contains(r.stderr, "disk full") ||
		!strings.Contains(r.stderr, "--push-image=false") {
		t.Errorf("exit %d, stderr %q; want a failed push that names --push-image=false", r.code, r.stderr)
	}
}

// imageJobs keeps one image, "box:1", that a running job uses, and "old:1".
type imageJobs struct{ fakeJobs }

func (imageJobs) ListImages(context.Context, *cloudmlv1.ListImagesRequest) (*cloudmlv1.ListImagesResponse, error) {
	id := "sha256:" + strings.Repeat("b", 64)
	return &cloudmlv1.ListImagesResponse{Images: []*cloudmlv1.ImageHeader{
		{Name: "box:1", Id: id, Size: 5 << 20}, {Name: "old:1", Id: id, Size: 5 << 20}}}, nil
}

func (imageJobs) DeleteImage(_ context.Context, req *cloudmlv1.DeleteImageRequest) (*cloudmlv1.DeleteImageResponse, error) {
	switch req.Name {
	case "old:1":
		return &cloudmlv1.DeleteImageResponse{Image: &cloudmlv1.ImageHeader{Name: "old:1", Id: "sha256:" + strings.Repeat("b", 64), Size: 5 << 20},
			BytesFreed: 5 << 20}, nil
	case "box:1":
		return nil, status.Error(codes.FailedPrecondition, "image box:1 is used by job j1, which has not ended; wait for it or stop it with `cloudml-client cancel j1`")
	}
	return nil, status.Errorf(codes.NotFound, "image not found: no image named %s", req.Name)
}

func TestImageListAndRemove(t *testing.T) {
	code, out, _ := runFake(t, &imageJobs{}, "image", "ls")
	want := "IMAGE  ID            SIZE\nbox:1  bbbbbbbbbbbb  5.0 MiB\nold:1  bbbbbbbbbbbb  5.0 MiB\n"
	if code != ExitOK || out != want {
		t.Errorf("image ls: exit %d, stdout\n%s\nwant\n%s", code, out, want)
	}
	code, out, _ = runFake(t, &imageJobs{}, "-o", "json", "image", "ls")
	var list struct {
		Images []struct{ Name, ID, Size string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != ExitOK || len(list.Images) != 2 || list.Images[1].Size != "5242880" {
		t.Errorf("image ls -o json: exit %d, %v, %+v from\n%s", code, err, list, out)
	}

	code, out, errs := runFake(t, &imageJobs{}, "image", "rm", "old:1", "box:1", "gone:1")
	if code != ExitError || out != "removed image old:1 (bbbbbbbbbbbb); 5.0 MiB freed\n" ||
		!strings.Contains(errs, "cloudml-client cancel j1") || !strings.Contains(errs, "remove image gone:1") {
		t.Errorf("image rm: exit %d stdout %q stderr %q", code, out, errs)
	}
	code, out, _ = runFake(t, &imageJobs{}, "-o", "json", "image", "rm", "old:1")
	var rm struct {
		Removed []struct {
			Image      struct{ Name string }
			BytesFreed string
		}
	}
	if err := json.Unmarshal([]byte(out), &rm); err != nil || code != ExitOK || len(rm.Removed) != 1 || rm.Removed[0].BytesFreed != "5242880" {
		t.Errorf("image rm -o json: exit %d, %v, %+v from\n%s", code, err, rm, out)
	}
	for _, args := range [][]string{{"image"}, {"image", "rm"}, {"image", "tag"}} {
		if code, _, errs := runFake(t, &imageJobs{}, args...); code != ExitUsage || !strings.Contains(errs, "image") {
			t.Errorf("%v: exit %d stderr %q, want a usage error", args, code, errs)
		}
	}
	if code, out, _ := runFake(t, &imageJobs{}, "image", "--help"); code != ExitOK || !strings.Contains(out, "cloudml-client image rm cloudml/octave:7") {
		t.Errorf("image --help: exit %d stdout %q", code, out)
	}
}
