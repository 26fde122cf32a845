package coordinator

import (
	"bytes"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/imagetest"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// testArchive is a `docker save` archive of one untagged image whose
// config holds seed, with a layer of about size bytes.
func testArchive(t *testing.T, seed string, size int) (id string, data []byte) {
	t.Helper()
	data, ids := imagetest.Archive(imagetest.Options{}, imagetest.Image{Seed: seed, Layers: [][]byte{imagetest.Layer(seed, size)}})
	return ids[0], data
}

// push plays a client pushing an image; sent reports whether the
// coordinator asked for the archive.
func (h *harness) push(name, id string, data []byte) (resp *cloudmlv1.PushImageResponse, sent bool, err error) {
	return h.pushAs(h.jobs, false, name, id, data)
}

// pushAs is push by the credential of jobs, forced or not.
func (h *harness) pushAs(jobs cloudmlv1.JobServiceClient, force bool, name, id string, data []byte) (resp *cloudmlv1.PushImageResponse, sent bool, err error) {
	stream, err := jobs.PushImage(ctxT(h.t))
	if err != nil {
		return nil, false, err
	}
	hdr := &cloudmlv1.ImageHeader{Name: name, Id: id, Size: int64(len(data)), Force: force}
	if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Header{Header: hdr}}); err != nil {
		return nil, false, err
	}
	md, err := stream.Header()
	if err != nil {
		return nil, false, err
	}
	if len(md.Get(PushArchiveHeader)) > 0 {
		sent = true
		for off := 0; off < len(data); off += 300 << 10 {
			chunk := data[off:min(off+300<<10, len(data))]
			if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Chunk{Chunk: chunk}}); err != nil {
				break // the status comes with CloseAndRecv
			}
		}
	}
	resp, err = stream.CloseAndRecv()
	return resp, sent, err
}

// fetch plays an agent fetching an image.
func (a *fakeAgent) fetch(name string) (*cloudmlv1.ImageHeader, []byte, error) {
	stream, err := a.client.FetchImage(ctxT(a.t), &cloudmlv1.FetchImageRequest{Image: name}, a.creds())
	if err != nil {
		return nil, nil, err
	}
	return testutil.ReadImage(stream)
}

// upload plays an agent answering ExportImage: the archive, or errText.
func (a *fakeAgent) upload(name, id string, data []byte, errText string) (*cloudmlv1.UploadImageResponse, error) {
	stream, err := a.client.UploadImage(ctxT(a.t), a.creds())
	if err != nil {
		return nil, err
	}
	if errText != "" {
		stream.Send(&cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Error{Error: errText}})
		return stream.CloseAndRecv()
	}
	stream.Send(&cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Header{Header: &cloudmlv1.ImageHeader{Name: name, Id: id}}})
	for off := 0; off < len(data); off += 256 << 10 {
		if err := stream.Send(&cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Chunk{Chunk: data[off:min(off+256<<10, len(data))]}}); err != nil {
			break
		}
	}
	return stream.CloseAndRecv()
}

// nextExport waits for an ExportImage command.
func (a *fakeAgent) nextExport() string {
	a.t.Helper()
	m := a.nextOther()
	if m.GetExportImage() == nil {
		a.t.Fatalf("agent %s got %v, want ExportImage", a.id, m)
	}
	return m.GetExportImage().GetImage()
}

func TestPushThenFetch(t *testing.T) {
	h := start(t, "")
	id, data := testArchive(t, `{"push":1}`, 2<<20+12345)
	resp, sent, err := h.push("cloudml/octave:7", id, data)
	if err != nil || !sent || resp.GetId() != id || resp.GetAlreadyPresent() || resp.GetBytesReceived() != int64(len(data)) {
		t.Fatalf("push = %v, sent %v, %v; want %s stored with %d bytes", resp, sent, err, id, len(data))
	}
	node := newAgent(t, h, 1)
	hdr, got, err := node.fetch("cloudml/octave:7")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if hdr.GetId() != id || hdr.GetSize() != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("fetch: header %v and %d bytes; want %s and the %d bytes pushed", hdr, len(got), id, len(data))
	}

	// The same image again, under another name: no archive is sent.
	resp, sent, err = h.push("octave:latest", id, data)
	if err != nil || sent || !resp.GetAlreadyPresent() || resp.GetId() != id {
		t.Fatalf("second push = %v, sent %v, %v; want already_present without the archive", resp, sent, err)
	}
	if hdr, _, err := node.fetch("octave:latest"); err != nil || hdr.GetId() != id {
		t.Fatalf("fetch of the second name: %v, %v", hdr, err)
	}
}

func TestPushRejectsBadImages(t *testing.T) {
	h := start(t, "")
	id, data := testArchive(t, `{"a":1}`, 1000)
	other, _ := testArchive(t, `{"b":1}`, 1000)
	debian := imagetest.Image{Seed: "retag", RepoTags: []string{"debian:12"}}
	retag, _ := imagetest.Archive(imagetest.Options{}, debian)
	two, twoIDs := imagetest.Archive(imagetest.Options{}, imagetest.Image{Seed: "one"}, imagetest.Image{Seed: "two"})
	for _, tc := range []struct {
		name, id string
		data     []byte
		msg      string
	}{
		{"x:1", "sha256:short", data, "not sha256: and 64 hex digits"},
		{"../../etc/passwd", id, data, "not an image reference"},
		{"x:1", other, data, "not " + other + " as pushed"},
		{"x:1", imagetest.ID(debian), retag, `the archive tags the image "debian:12"; an image pushed as "x:1" may carry no other name`},
		{"x:1", twoIDs[0], two, "the archive holds 2 images"},
	} {
		_, _, err := h.push(tc.name, tc.id, tc.data)
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("push %s as %s: %v; want a message saying %q", tc.name, tc.id, err, tc.msg)
		}
	}
	list, err := h.jobs.ListImages(ctxT(t), &cloudmlv1.ListImagesRequest{})
	if err != nil || len(list.GetImages()) != 0 {
		t.Errorf("images kept after refused pushes: %v, %v", list.GetImages(), err)
	}
}

func TestFetchAsksNodesOnce(t *testing.T) {
	h := start(t, "")
	mgr, wrk := formSwarm(t, h)
	proc := newAgent(t, h, 1)
	id, data := testArchive(t, `{"export":1}`, 3<<20)
	const name = "only/on:manager"

	type result struct {
		hdr  *cloudmlv1.ImageHeader
		data []byte
		err  error
	}
	results := make(chan result, 2)
	for _, a := range []*fakeAgent{wrk, proc} {
		go func() {
			hdr, got, err := a.fetch(name)
			results <- result{hdr, got, err}
		}()
	}
	waitFor(t, "two nodes waiting for one export", func() bool {
		h.c.exports.mu.Lock()
		defer h.c.exports.mu.Unlock()
		e := h.c.exports.byName[name]
		return e != nil && len(e.requesters) == 2
	})
	if got := mgr.nextExport(); got != name {
		t.Fatalf("manager asked for %q, want %q", got, name)
	}
	if resp, err := mgr.upload(name, id, data, ""); err != nil || resp.GetBytesReceived() != int64(len(data)) {
		t.Fatalf("upload = %v, %v", resp, err)
	}
	for range 2 {
		r := <-results
		if r.err != nil || r.hdr.GetId() != id || !bytes.Equal(r.data, data) {
			t.Fatalf("fetch: %v, %d bytes, %v; want %s and the uploaded bytes", r.hdr, len(r.data), r.err, id)
		}
	}
	mgr.barrier()
	wrk.barrier()
	select {
	case m := <-mgr.others:
		t.Fatalf("a second command %v after one export", m)
	case m := <-wrk.others:
		t.Fatalf("the worker got %v; it was fetching", m)
	default:
	}
	// Now kept: a later fetch asks nobody.
	if hdr, _, err := proc.fetch(name); err != nil || hdr.GetId() != id {
		t.Fatalf("fetch of a kept image: %v, %v", hdr, err)
	}
}

func TestFetchTriesTheNextNode(t *testing.T) {
	h := start(t, "")
	mgr, wrk := formSwarm(t, h)
	proc := newAgent(t, h, 1)
	id, data := testArchive(t, `{"worker":1}`, 5000)
	done := make(chan error, 1)
	go func() {
		hdr, got, err := proc.fetch("on/worker:1")
		if err == nil && (hdr.GetId() != id || !bytes.Equal(got, data)) {
			err = errors.New("fetched the wrong image")
		}
		done <- err
	}()
	mgr.nextExport()
	if _, err := mgr.upload("", "", nil, "no such image: on/worker:1"); err != nil {
		t.Fatalf("error reply: %v", err)
	}
	if got := wrk.nextExport(); got != "on/worker:1" {
		t.Fatalf("worker asked for %q", got)
	}
	if _, err := wrk.upload("on/worker:1", id, data, ""); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("fetch: %v", err)
	}
}

func TestFetchOfAnImageNobodyHas(t *testing.T) {
	h := start(t, "")
	mgr, wrk := formSwarm(t, h)
	done := make(chan error, 1)
	go func() { _, _, err := wrk.fetch("nowhere:1"); done <- err }()
	mgr.nextExport()
	mgr.upload("", "", nil, "no such image: nowhere:1")
	err := <-done
	wantCode(t, err, codes.NotFound)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no client pushed it and no node has it") || !strings.Contains(msg, mgr.id+": no such image") {
		t.Errorf("message %q does not say who was asked", msg)
	}
}

// A node that never answers is given up on after ImageExportStart. (Its
// own test: a limit this short would also cut off slow answers.)
func TestFetchGivesUpOnASilentNode(t *testing.T) {
	h := start(t, "", func(c *Config) { c.ImageExportStart = 200 * time.Millisecond })
	mgr, wrk := formSwarm(t, h)
	done := make(chan error, 1)
	go func() { _, _, err := wrk.fetch("silent:1"); done <- err }()
	mgr.nextExport()
	err := <-done
	wantCode(t, err, codes.NotFound)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no upload began") {
		t.Errorf("message %q does not say the node never answered", msg)
	}
	// An upload nobody asked for is refused.
	id, data := testArchive(t, `{"u":1}`, 100)
	_, err = mgr.upload("silent:1", id, data, "")
	wantCode(t, err, codes.FailedPrecondition)
}

func TestStageJobCarriesTheImage(t *testing.T) {
	h := start(t, "")
	id, data := testArchive(t, `{"stage":1}`, 100)
	if _, _, err := h.push("cloudml/busybox:test", id, data); err != nil {
		t.Fatal(err)
	}
	mgr, wrk := formSwarm(t, h)
	for _, image := range []string{"cloudml/busybox:test", "unpushed:1"} {
		spec := gridSpec("boxed", 1)
		spec.Image = image
		job := h.submit(spec)
		wantID := ""
		if image == "cloudml/busybox:test" {
			wantID = id
		}
		for _, a := range []*fakeAgent{mgr, wrk} {
			st := a.nextOther().GetStageJob()
			if st.GetJobId() != job.GetId() || st.GetImage() != image || st.GetImageId() != wantID {
				t.Fatalf("node %s got %v; want StageJob of %s with image %s (%q)", a.id, st, job.GetId(), image, wantID)
			}
		}
	}
}

func TestListAndDeleteImages(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	id, data := testArchive(t, `{"del":1}`, 1000)
	for _, name := range []string{"cloudml/busybox:test", "alias:1"} {
		if _, _, err := h.push(name, id, data); err != nil {
			t.Fatal(err)
		}
	}
	list, err := h.jobs.ListImages(ctxT(t), &cloudmlv1.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, im := range list.GetImages() {
		names = append(names, im.GetName())
		if im.GetId() != id || im.GetSize() != int64(len(data)) {
			t.Errorf("listed %v, want id %s and size %d", im, id, len(data))
		}
	}
	if !slices.Equal(names, []string{"alias:1", "cloudml/busybox:test"}) {
		t.Errorf("listed names %v", names)
	}

	// A job that has not ended keeps its image.
	spec := gridSpec("boxed", 1)
	spec.Image = "cloudml/busybox:test"
	job := h.submit(spec)
	_, err = h.jobs.DeleteImage(ctxT(t), &cloudmlv1.DeleteImageRequest{Name: "cloudml/busybox:test"})
	wantCode(t, err, codes.FailedPrecondition)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, job.GetId()) || !strings.Contains(msg, "cloudml-client cancel") {
		t.Errorf("refusal %q does not name the job and what to do", msg)
	}
	if _, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}

	// The archive goes with the last name that points at it.
	for _, step := range []struct {
		name  string
		freed int64
	}{{"cloudml/busybox:test", 0}, {"alias:1", int64(len(data))}} {
		resp, err := h.jobs.DeleteImage(ctxT(t), &cloudmlv1.DeleteImageRequest{Name: step.name})
		if err != nil || resp.GetImage().GetId() != id || resp.GetBytesFreed() != step.freed {
			t.Fatalf("DeleteImage(%s) = %v, %v; want id %s, %d bytes freed", step.name, resp, err, id, step.freed)
		}
	}
	_, err = h.jobs.DeleteImage(ctxT(t), &cloudmlv1.DeleteImageRequest{Name: "alias:1"})
	wantCode(t, err, codes.NotFound)
	_, err = h.jobs.DeleteImage(ctxT(t), &cloudmlv1.DeleteImageRequest{Name: "../etc"})
	wantCode(t, err, codes.InvalidArgument)

	// Gone on disk too: after a restart nothing is listed.
	h.stop()
	h2 := start(t, dir)
	if list, err := h2.jobs.ListImages(ctxT(t), &cloudmlv1.ListImagesRequest{}); err != nil || len(list.GetImages()) != 0 {
		t.Errorf("after a restart: %v, %v; want no images", list, err)
	}
}

// TestPushOverAnothersNameNeedsForce: a client may not replace an image
// name another credential pushed unless it forces it; an admin may; the
// same image pushed again keeps its owner.
func TestPushOverAnothersNameNeedsForce(t *testing.T) {
	h := start(t, "")
	alice := cloudmlv1.NewJobServiceClient(h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), certOf(h.newCredential(t, "alice", false))))))
	bob := cloudmlv1.NewJobServiceClient(h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), certOf(h.newCredential(t, "bob", false))))))
	idA, dataA := testArchive(t, "a", 1<<10)
	idB, dataB := testArchive(t, "b", 1<<10)
	owner := func() string {
		info, _ := h.c.images.Lookup("team/model:1")
		return info.Owner
	}
	if _, _, err := h.pushAs(alice, false, "team/model:1", idA, dataA); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.pushAs(bob, false, "team/model:1", idB, dataB)
	wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(err.Error(), "was pushed by alice") || owner() != "alice" {
		t.Errorf("bob's push over alice's name: %v; owner %q", err, owner())
	}
	if _, _, err := h.pushAs(bob, false, "team/model:1", idA, dataA); err != nil || owner() != "alice" {
		t.Errorf("bob pushing alice's own image again: %v; owner %q, want alice kept", err, owner())
	}
	if _, _, err := h.pushAs(bob, true, "team/model:1", idB, dataB); err != nil || owner() != "bob" {
		t.Errorf("bob's forced push: %v; owner %q, want bob", err, owner())
	}
	if _, _, err := h.push("team/model:1", idA, dataA); err != nil || owner() != "admin" {
		t.Errorf("the admin's push over bob's name: %v; owner %q", err, owner())
	}
}

func certOf(pair *tls.Certificate) func() *tls.Certificate {
	return func() *tls.Certificate { return pair }
}
