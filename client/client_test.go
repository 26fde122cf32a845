package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// startCluster runs an in-process coordinator with nodes agents and a
// client of it.
func startCluster(t *testing.T, nodes int, mod func(*client.Config)) (*inproc.Cluster, *client.Client) {
	t.Helper()
	cl, err := inproc.Start(inproc.Config{Dir: t.TempDir(), Nodes: nodes, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	cfg := client.DefaultConfig()
	cfg.Address, cfg.DialOptions = inproc.Target, cl.DialOptions()
	if mod != nil {
		mod(&cfg)
	}
	return cl, newClient(t, cfg)
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeClient is a client of the services register adds.
func fakeClient(t *testing.T, register func(*grpc.Server), mod func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Address, cfg.DialOptions = inproc.Target, testutil.ServeGRPC(t, register)
	if mod != nil {
		mod(&cfg)
	}
	return newClient(t, cfg)
}

// recorder is a Progress that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Start(tr client.Transfer) client.Tracker {
	r.add(fmt.Sprintf("start %s %s", tr.Kind, tr.Name))
	return &recTracker{r: r, tr: tr}
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// ends are the events other than updates.
func (r *recorder) ends() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if !strings.HasPrefix(e, "update") {
			out = append(out, e)
		}
	}
	return out
}

type recTracker struct {
	r    *recorder
	tr   client.Transfer
	last int64
}

func (t *recTracker) Update(cur, total int64) {
	t.last = cur
	t.r.add(fmt.Sprintf("update %s %d/%d", t.tr.Name, cur, total))
}

func (t *recTracker) Done(err error) {
	t.r.add(fmt.Sprintf("done %s %d %v", t.tr.Name, t.last, err))
}

func TestSubmitUploadsOnceByDigest(t *testing.T) {
	cl, c := startCluster(t, 0, nil)
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "run.sh"), []byte("echo hi\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "train.csv"), []byte("1,2\n"), 0o644)
	spec := &cloudmlv1.JobSpec{Name: "up", Code: &cloudmlv1.Source{Url: "code"}, Command: []string{"sh", "run.sh"},
		Data: map[string]*cloudmlv1.Source{"train": {Url: "train.csv"}, "remote": {Url: "file:///elsewhere/x"}}}
	rec := &recorder{}
	sub, err := c.Submit(t.Context(), spec, client.SubmitOptions{BaseDir: dir, Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	if spec.GetCode().GetUrl() != "code" {
		t.Errorf("Submit modified the caller's spec: code %q", spec.GetCode().GetUrl())
	}
	if len(sub.Uploads) != 2 || sub.Uploads[0].Skipped || !strings.HasPrefix(sub.Uploads[0].URL, cl.Bucket+"/code/sha256-") ||
		!strings.HasSuffix(sub.Uploads[1].URL, "/train.csv") || sub.Uploads[1].Size != 4 {
		t.Errorf("uploads %+v", sub.Uploads)
	}
	got := sub.Job.GetSpec()
	if got.GetCode().GetUrl() != sub.Uploads[0].URL || !strings.HasPrefix(got.GetCode().GetDigest(), "sha256:") ||
		got.GetData()["train"].GetUrl() != sub.Uploads[1].URL || got.GetData()["remote"].GetUrl() != "file:///elsewhere/x" {
		t.Errorf("submitted spec %v does not point at the uploads", got)
	}
	codePath, dataPath := filepath.Join(dir, "code"), filepath.Join(dir, "train.csv")
	want := map[string]bool{
		"start upload " + codePath: true, "start upload " + dataPath: true,
		fmt.Sprintf("done %s %d <nil>", codePath, sub.Uploads[0].Size): true, "done " + dataPath + " 4 <nil>": true,
	}
	for _, e := range rec.ends() {
		if !want[e] {
			t.Errorf("unexpected progress event %q", e)
		}
		delete(want, e)
	}
	if len(want) > 0 {
		t.Errorf("missing progress events %v", want)
	}

	rec = &recorder{}
	again, err := c.Submit(t.Context(), spec, client.SubmitOptions{BaseDir: dir, Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Uploads[0].Skipped || !again.Uploads[1].Skipped || again.Uploads[0].URL != sub.Uploads[0].URL || len(rec.ends()) != 0 {
		t.Errorf("second submit uploads %+v, progress %v; want both skipped, nothing sent", again.Uploads, rec.ends())
	}
	if again.Job.GetId() == sub.Job.GetId() {
		t.Errorf("second submit made no new job")
	}
}

func TestSubmitRefusesAnInvalidSpec(t *testing.T) {
	c := fakeClient(t, func(*grpc.Server) {}, nil)
	_, err := c.Submit(t.Context(), &cloudmlv1.JobSpec{Name: "x"}, client.SubmitOptions{})
	if !errors.Is(err, client.ErrInvalidSpec) {
		t.Errorf("Submit of a spec without code or command: %v, want ErrInvalidSpec", err)
	}
}

// fakeDocker has one image whose archive is archive.
type fakeDocker struct {
	id, archive string
	missing     bool
}

func (f fakeDocker) ImageInspect(ctx context.Context, ref string, _ ...dockerclient.ImageInspectOption) (image.InspectResponse, error) {
	if f.missing {
		return image.InspectResponse{}, notFound{}
	}
	return image.InspectResponse{ID: f.id, Size: int64(len(f.archive))}, nil
}

func (f fakeDocker) ImageSave(ctx context.Context, refs []string, _ ...dockerclient.ImageSaveOption) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(f.archive)), nil
}

func (f fakeDocker) Close() error { return nil }

// notFound is what Docker says of an image it lacks.
type notFound struct{}

func (notFound) Error() string { return "no such image" }
func (notFound) NotFound()     {}

func TestPushImageOnceByID(t *testing.T) {
	id, archive := testutil.FakeImageArchive(`{"box":1}`, 3<<20)
	d := fakeDocker{id: id, archive: string(archive)}
	_, c := startCluster(t, 0, func(cfg *client.Config) {
		cfg.Docker = func() (client.DockerImages, error) { return d, nil }
	})
	rec := &recorder{}
	push, err := c.PushImage(t.Context(), "box:1", client.PushOptions{Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	if push.ID != d.id || push.Bytes != int64(len(archive)) || push.AlreadyPresent || push.NotLocal {
		t.Errorf("first push %+v", push)
	}
	if diff := cmp.Diff([]string{"start push box:1", fmt.Sprintf("done box:1 %d <nil>", len(archive))}, rec.ends()); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	images, err := c.Images(t.Context())
	if err != nil || len(images) != 1 || images[0].GetName() != "box:1" || images[0].GetId() != d.id {
		t.Errorf("images after the push: %v, %v", images, err)
	}
	again, err := c.PushImage(t.Context(), "box:1", client.PushOptions{})
	if err != nil || !again.AlreadyPresent || again.ID != d.id || again.Bytes != 0 {
		t.Errorf("second push %+v, %v; want already present", again, err)
	}
	rm, err := c.RemoveImage(t.Context(), "box:1")
	if err != nil || rm.GetBytesFreed() == 0 {
		t.Errorf("remove: %v, %v", rm, err)
	}
}

func TestPushImageTheLocalDockerLacks(t *testing.T) {
	c := fakeClient(t, func(*grpc.Server) {}, func(cfg *client.Config) {
		cfg.Docker = func() (client.DockerImages, error) { return fakeDocker{missing: true}, nil }
	})
	push, err := c.PushImage(t.Context(), "absent:1", client.PushOptions{})
	if err != nil || !push.NotLocal || push.DockerError != nil {
		t.Errorf("push of an image Docker lacks: %+v, %v; want NotLocal and no error", push, err)
	}
}

// scriptedLogs serves a job's logs in two streams: the first breaks with
// Unavailable after two batches, the second must resume after them.
type scriptedLogs struct {
	cloudmlv1.UnimplementedJobServiceServer
	mu    sync.Mutex
	calls int
	after [][]*cloudmlv1.LogPosition
}

func (s *scriptedLogs) SubscribeLogs(req *cloudmlv1.SubscribeLogsRequest, stream grpc.ServerStreamingServer[cloudmlv1.SubscribeLogsResponse]) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.after = append(s.after, req.GetAfter())
	s.mu.Unlock()
	batch := func(task int32, seq uint64, line string) *cloudmlv1.SubscribeLogsResponse {
		return &cloudmlv1.SubscribeLogsResponse{TaskIndex: task, Attempt: 1, Seq: seq, Data: []byte(line + "\n"), Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT}
	}
	if call == 1 {
		stream.Send(batch(0, 1, "a"))
		stream.Send(batch(1, 1, "b"))
		return status.Error(codes.Unavailable, "coordinator restarting")
	}
	stream.Send(batch(0, 2, "c"))
	return stream.Send(&cloudmlv1.SubscribeLogsResponse{JobState: cloudmlv1.JobState_JOB_STATE_SUCCEEDED})
}

func TestLogsResumeAfterTheCoordinatorWentAway(t *testing.T) {
	srv := &scriptedLogs{}
	c := fakeClient(t, func(s *grpc.Server) { cloudmlv1.RegisterJobServiceServer(s, srv) }, nil)
	var lines []string
	lost := 0
	final, err := c.Logs(t.Context(), "j", client.LogOptions{Follow: true, Reconnect: 10 * time.Second, OnDisconnect: func(error) { lost++ }},
		func(m *cloudmlv1.SubscribeLogsResponse) error {
			lines = append(lines, fmt.Sprintf("%d:%s", m.GetTaskIndex(), strings.TrimSpace(string(m.GetData()))))
			return nil
		})
	if err != nil || final != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("Logs = %v, %v", final, err)
	}
	if diff := cmp.Diff([]string{"0:a", "1:b", "0:c"}, lines); diff != "" || lost != 1 {
		t.Errorf("lines (-want +got):\n%s; %d disconnects, want 1", diff, lost)
	}
	resumed := map[int32]uint64{}
	for _, p := range srv.after[1] {
		resumed[p.GetTaskIndex()] = p.GetSeq()
	}
	if diff := cmp.Diff(map[int32]uint64{0: 1, 1: 1}, resumed); diff != "" {
		t.Errorf("second stream resumed after (-want +got):\n%s", diff)
	}
}

func TestLogsGiveUpAtOnceWithoutReconnect(t *testing.T) {
	srv := &scriptedLogs{}
	c := fakeClient(t, func(s *grpc.Server) { cloudmlv1.RegisterJobServiceServer(s, srv) }, nil)
	_, err := c.Logs(t.Context(), "j", client.LogOptions{Follow: true}, func(*cloudmlv1.SubscribeLogsResponse) error { return nil })
	if !errors.Is(err, client.ErrGaveUp) || status.Code(err) != codes.Unavailable {
		t.Errorf("Logs with Reconnect 0: %v; want ErrGaveUp wrapping Unavailable", err)
	}
	stop := errors.New("enough")
	_, err = c.Logs(t.Context(), "j", client.LogOptions{Follow: true}, func(*cloudmlv1.SubscribeLogsResponse) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("Logs whose callback failed: %v, want that error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := client.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	cfg.CallTimeout = -1
	if err := cfg.Validate(); !errors.Is(err, client.ErrConfig) {
		t.Errorf("negative timeout: %v, want ErrConfig", err)
	}
	if _, err := client.New(cfg); !errors.Is(err, client.ErrConfig) {
		t.Errorf("New with a bad config: %v", err)
	}
}
