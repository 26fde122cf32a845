package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Image push. Many users have no registry: before a job with an image is
// submitted, the client pushes that image from its own Docker to the
// coordinator, which hands it to the nodes that lack it. The coordinator
// keeps images by id, so an unchanged image is never sent twice.

// pushArchiveHeader is the response header the coordinator sets once it
// wants the archive (coordinator.PushArchiveHeader); without it the
// coordinator has answered already and no archive is sent.
const pushArchiveHeader = "cloudml-push-archive"

// imageChunk is the size of the archive pieces sent.
const imageChunk = 1 << 20

// inspectTimeout bounds the question to the local Docker.
const inspectTimeout = 10 * time.Second

// dockerImages is the part of the Docker API an image push uses.
type dockerImages interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageSave(ctx context.Context, refs []string, opts ...client.ImageSaveOption) (io.ReadCloser, error)
	Close() error
}

// connectDocker connects to the local Docker; tests replace it.
var connectDocker = localDocker

// localDocker connects to this machine's Docker (DOCKER_HOST or the
// default socket).
func localDocker() (dockerImages, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// pushImage pushes name from the local Docker to the coordinator. An image
// the local Docker does not have, or no Docker at all, is not an error: the
// nodes may have it or pull it from a registry.
func (a *App) pushImage(ctx context.Context, name string) error {
	d, err := connectDocker()
	if err != nil {
		return nil // no usable Docker configuration here
	}
	defer d.Close()
	ictx, cancel := context.WithTimeout(ctx, inspectTimeout)
	info, err := d.ImageInspect(ictx, name)
	cancel()
	switch {
	case err == nil:
	case errdefs.IsNotFound(err), client.IsErrConnectionFailed(err):
		return nil
	default:
		fmt.Fprintf(a.Stderr, "note: could not ask the local Docker about image %s (%v); the nodes will look for it themselves\n", name, err)
		return nil
	}
	if err := a.sendImage(ctx, d, name, info); err != nil {
		return fmt.Errorf("push image %s to the coordinator: %w (retry; or pass --push-image=false if the nodes have it or can pull it from a registry)", name, err)
	}
	return nil
}

// sendImage streams the image's `docker save` archive unless the
// coordinator already keeps its id.
func (a *App) sendImage(ctx context.Context, d dockerImages, name string, info image.InspectResponse) error {
	ctx, cancel := context.WithCancel(ctx) // cancelling aborts the push; the coordinator keeps nothing
	defer cancel()
	stream, err := a.jobs.PushImage(ctx)
	if err != nil {
		return err
	}
	hdr := &cloudmlv1.ImageHeader{Name: name, Id: info.ID, Size: info.Size}
	if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Header{Header: hdr}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	md, err := stream.Header() // on an error, CloseAndRecv returns the status
	if err != nil || len(md.Get(pushArchiveHeader)) == 0 {
		resp, err := stream.CloseAndRecv()
		if err != nil {
			return err
		}
		if !a.json() {
			fmt.Fprintf(a.Stderr, "image %s: already on the coordinator (%s)\n", name, shortID(resp.GetId()))
		}
		return nil
	}
	rc, err := d.ImageSave(ctx, []string{name})
	if err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	defer rc.Close()
	out := a.Stderr
	if a.json() {
		out = io.Discard
	}
	p := &pushProgress{w: out, name: name, total: info.Size, start: time.Now()}
	buf := make([]byte, imageChunk)
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				if errors.Is(err, io.EOF) {
					break // the coordinator answered early; CloseAndRecv says how
				}
				return err
			}
			p.add(int64(n))
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("docker save: %w", rerr)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	p.done(resp.GetId())
	return nil
}

// pushProgress reports a push on w: for large images the percentage and
// rate about once a second, then one line with the total.
type pushProgress struct {
	w       io.Writer
	name    string
	total   int64 // the image's size, an estimate of the archive's
	start   time.Time
	last    time.Time
	n       int64
	lastLen int // length of the last progress line, to overwrite it
}

func (p *pushProgress) add(n int64) {
	p.n += n
	if p.total < progressMin || time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	pct := min(p.n*100/p.total, 99) // the archive is a little larger than the image
	line := fmt.Sprintf("pushing image %s: %.1f / %.1f MiB (%d%%) %.1f MiB/s", p.name, mib(p.n), mib(p.total), pct, p.rate())
	fmt.Fprint(p.w, "\r"+line)
	p.lastLen = len(line)
}

func (p *pushProgress) done(id string) {
	line := fmt.Sprintf("pushed image %s (%s): %.1f MiB in %s, %.1f MiB/s", p.name, shortID(id), mib(p.n),
		time.Since(p.start).Round(100*time.Millisecond), p.rate())
	if p.lastLen > len(line) {
		line += strings.Repeat(" ", p.lastLen-len(line))
	}
	fmt.Fprint(p.w, "\r"+line+"\n")
}

func (p *pushProgress) rate() float64 {
	return mib(p.n) / max(time.Since(p.start).Seconds(), 1e-3)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// shortID is the first 12 hex digits of an image id, as docker prints it.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
