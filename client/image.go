package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Image push. Many users have no registry: before a job with an image is
// submitted, the client pushes that image from its own Docker to the
// coordinator, which hands it to the nodes that lack it. The coordinator
// keeps images by id, so an unchanged image is never sent twice.

// PushArchiveHeader is the response header the coordinator sets once it
// wants the archive (coordinator.PushArchiveHeader); without it the
// coordinator has answered already and no archive is sent.
const PushArchiveHeader = "cloudml-push-archive"

// imageChunk is the size of the archive pieces sent.
const imageChunk = 1 << 20

// inspectTimeout bounds the question to the local Docker.
const inspectTimeout = 10 * time.Second

// ImagePush is what PushImage did.
type ImagePush struct {
	// Name is the image reference.
	Name string
	// ID is the image id the coordinator keeps for Name (empty when
	// nothing was pushed).
	ID string
	// NotLocal is set when the local Docker does not have the image, or
	// there is no local Docker: nothing was pushed, and the nodes will look
	// for the image themselves.
	NotLocal bool
	// DockerError, with NotLocal, is why the local Docker could not be
	// asked (nil when it simply lacks the image or is not there).
	DockerError error
	// AlreadyPresent is set when the coordinator kept that id already and
	// no archive was sent.
	AlreadyPresent bool
	// Bytes is the size of the archive sent.
	Bytes int64
	// Elapsed is how long the push took.
	Elapsed time.Duration
}

// PushOptions shape an image push.
type PushOptions struct {
	// Progress is told about the transfer; nil: nothing is.
	Progress Progress
	// Force replaces a name another credential pushed (an admin may
	// without it).
	Force bool
}

// PushImage pushes an image from the local Docker to the coordinator,
// unless the coordinator keeps that image id already. An image the local
// Docker does not have, or no local Docker, is not an error (NotLocal): the
// nodes may have it or pull it from a registry.
func (c *Client) PushImage(ctx context.Context, name string, o PushOptions) (*ImagePush, error) {
	res := &ImagePush{Name: name, NotLocal: true}
	d, err := c.cfg.Docker()
	if err != nil {
		return res, nil // no usable Docker configuration here
	}
	defer d.Close()
	ictx, cancel := context.WithTimeout(ctx, inspectTimeout)
	info, err := d.ImageInspect(ictx, name)
	cancel()
	switch {
	case err == nil:
	case cerrdefs.IsNotFound(err), dockerclient.IsErrConnectionFailed(err):
		return res, nil
	default:
		res.DockerError = err
		return res, nil
	}
	res.NotLocal = false
	start := time.Now()
	err = c.sendImage(ctx, d, info, res, o)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("%w %s to the coordinator: %w", ErrPushImage, name, err)
	}
	return res, nil
}

// sendImage streams the image's `docker save` archive unless the
// coordinator already keeps its id.
func (c *Client) sendImage(ctx context.Context, d DockerImages, info image.InspectResponse, res *ImagePush, o PushOptions) error {
	p := o.Progress
	ctx, cancel := context.WithCancel(ctx) // cancelling aborts the push; the coordinator keeps nothing
	defer cancel()
	stream, err := c.jobs.PushImage(ctx)
	if err != nil {
		return err
	}
	hdr := &cloudmlv1.ImageHeader{Name: res.Name, Id: info.ID, Size: info.Size, Force: o.Force}
	if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Header{Header: hdr}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	md, err := stream.Header() // on an error, CloseAndRecv returns the status
	if err != nil || len(md.Get(PushArchiveHeader)) == 0 {
		resp, err := stream.CloseAndRecv()
		if err != nil {
			return err
		}
		res.ID, res.AlreadyPresent = resp.GetId(), true
		return nil
	}
	rc, err := d.ImageSave(ctx, []string{res.Name})
	if err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	defer rc.Close()
	tr := start(p, Transfer{Kind: KindImagePush, Name: res.Name, Total: info.Size})
	err = sendChunks(stream, rc, tr, info.Size)
	if err == nil {
		var resp *cloudmlv1.PushImageResponse
		resp, err = stream.CloseAndRecv()
		res.ID, res.Bytes = resp.GetId(), resp.GetBytesReceived()
	}
	tr.Done(err)
	return err
}

// sendChunks sends the archive in chunks, reporting to tr.
func sendChunks(stream cloudmlv1.JobService_PushImageClient, r io.Reader, tr Tracker, total int64) error {
	buf := make([]byte, imageChunk)
	var sent int64
	last := time.Time{}
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				if errors.Is(err, io.EOF) {
					return nil // the coordinator answered early; CloseAndRecv says how
				}
				return err
			}
			sent += int64(n)
			if time.Since(last) >= updateEvery {
				last = time.Now()
				tr.Update(sent, max(total, sent))
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			tr.Update(sent, sent) // the archive's size, now known
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("docker save: %w", rerr)
		}
	}
}
