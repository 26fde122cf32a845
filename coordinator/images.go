package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/cloudml/cloudml/coordinator/imagestore"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Image distribution. Many users have no registry, so the coordinator keeps
// `docker save` archives (coordinator/imagestore): a client pushes the image
// from its own Docker before it submits (PushImage), and a node whose Docker
// lacks a job's image fetches it (FetchImage). When nobody pushed it, the
// coordinator asks the nodes that may have it, one at a time, to upload it
// (ExportImage, answered with UploadImage); concurrent fetches of one name
// share one export.

// imageChunk is the size of the archive pieces the coordinator sends.
const imageChunk = 1 << 20

// PushArchiveHeader is the response header key PushImage sets (value "1")
// once it has read the image header and wants the archive. A client waits
// for the response headers after its header message: without this key the
// coordinator has answered already (already_present, or an error), and the
// client sends no archive at all.
const PushArchiveHeader = "cloudml-push-archive"

// PushImage stores an image archive a client sends, unless an image with
// that id is kept already.
func (s *jobServer) PushImage(stream grpc.ClientStreamingServer[cloudmlv1.PushImageRequest, cloudmlv1.PushImageResponse]) error {
	c := s.c
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(errorf(ErrInvalid, "push image: no header was sent"))
	}
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return toStatus(errorf(ErrInvalid, "push image: the first message must be the header"))
	}
	caller := callerFrom(stream.Context())
	info := imagestore.Info{Name: h.GetName(), ID: h.GetId(), Owner: caller.Name}
	if err := imagestore.Check(info.Name, info.ID); err != nil {
		return toStatus(err)
	}
	if err := c.mayPushAs(&info, caller, h.GetForce()); err != nil {
		return toStatus(err)
	}
	log := c.log.With("image", info.Name, "image_id", info.ID)
	if c.images.HasID(info.ID) {
		if err := c.images.Tag(info); err != nil {
			return toStatus(err)
		}
		log.Info("image push skipped: already kept")
		return stream.SendAndClose(&cloudmlv1.PushImageResponse{Id: info.ID, AlreadyPresent: true})
	}
	if err := c.checkImageSize(info.Name, h.GetSize()); err != nil {
		return toStatus(err)
	}
	if err := stream.SendHeader(metadata.Pairs(PushArchiveHeader, "1")); err != nil {
		return err
	}
	start := time.Now()
	r := &chunkReader{limit: c.imageLimit(info.Name), next: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if m.GetHeader() != nil {
			return nil, errorf(ErrInvalid, "push image %s: a second header in the stream", info.Name)
		}
		return m.GetChunk(), nil
	}}
	n, err := c.images.Put(stream.Context(), info, r)
	if err != nil {
		log.Warn("image push failed", "bytes", r.n, "error", err)
		return toStatus(err)
	}
	log.Info("image pushed", "bytes", n, "mb_per_s", mbPerSec(r.n, time.Since(start)))
	return stream.SendAndClose(&cloudmlv1.PushImageResponse{Id: info.ID, BytesReceived: n})
}

// imageHeader describes a kept image on the wire.
func imageHeader(info imagestore.Info) *cloudmlv1.ImageHeader {
	return &cloudmlv1.ImageHeader{Name: info.Name, Id: info.ID, Size: info.Size, Owner: info.Owner}
}

// mayPushAs checks that caller may push info.Name: a name nobody pushed
// (or a node uploaded), its own, or another's with force or as an admin,
// since every job that names it runs what it points at. Pushing the same
// id again keeps the name's owner.
func (c *Coordinator) mayPushAs(info *imagestore.Info, caller pki.Identity, force bool) error {
	cur, ok := c.images.Lookup(info.Name)
	switch {
	case !ok || cur.Owner == "" || cur.Owner == caller.Name:
		return nil
	case cur.ID == info.ID:
		info.Owner = cur.Owner
		return nil
	case force || caller.Role == pki.RoleAdmin:
		c.log.Warn("image name taken over", "image", info.Name, "owner", cur.Owner, "by", caller.Name, "force", force)
		return nil
	}
	return errorf(ErrPermissionDenied, "image %s was pushed by %s: push with --force to replace it (every job that names it will run yours), or use another name", info.Name, cur.Owner)
}

// ListImages lists the kept images by name.
func (s *jobServer) ListImages(ctx context.Context, _ *cloudmlv1.ListImagesRequest) (*cloudmlv1.ListImagesResponse, error) {
	resp := &cloudmlv1.ListImagesResponse{}
	for _, info := range s.c.images.List() {
		resp.Images = append(resp.Images, imageHeader(info))
	}
	return resp, nil
}

// DeleteImage forgets an image name no unfinished job uses, and its
// archive once no other name points at it. A job submitted at the same
// moment finds the name gone and has its nodes fetch the image as for any
// image nobody pushed.
func (s *jobServer) DeleteImage(ctx context.Context, req *cloudmlv1.DeleteImageRequest) (*cloudmlv1.DeleteImageResponse, error) {
	c := s.c
	name := req.GetName()
	if !imagestore.ValidName(name) {
		return nil, toStatus(errorf(ErrInvalid, "delete image: %q is not an image reference", name))
	}
	if job := c.jobUsingImage(name); job != "" {
		return nil, toStatus(errorf(ErrInUse, "image %s is used by job %s, which has not ended; wait for it or stop it with `cloudml-client cancel %s`", name, job, job))
	}
	info, freed, err := c.images.Delete(name)
	if err != nil {
		return nil, toStatus(err)
	}
	c.log.Info("image deleted", "image", name, "image_id", info.ID, "bytes_freed", freed)
	return &cloudmlv1.DeleteImageResponse{Image: imageHeader(info), BytesFreed: freed}, nil
}

// jobUsingImage returns the id of a job that has not ended and runs image,
// or "".
func (c *Coordinator) jobUsingImage(image string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id, j := range c.jobs {
		if j.spec.GetImage() == image && (!j.final() || j.activeAttempts() > 0) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return slices.Min(ids) // the same answer every time
}

// FetchImage streams the archive of the named image to a node, first
// asking the other nodes for it when no client pushed it.
func (s *agentServer) FetchImage(req *cloudmlv1.FetchImageRequest, stream grpc.ServerStreamingServer[cloudmlv1.FetchImageResponse]) error {
	c := s.c
	ctx := stream.Context()
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return toStatus(err)
	}
	name := req.GetImage()
	if !imagestore.ValidName(name) {
		return toStatus(errorf(ErrInvalid, "fetch image: %q is not an image reference", name))
	}
	if _, ok := c.images.Lookup(name); !ok {
		if err := c.exportImage(ctx, name, id); err != nil {
			return toStatus(err)
		}
	}
	rc, info, err := c.images.Open(name)
	if err != nil {
		return toStatus(err)
	}
	defer rc.Close()
	start := time.Now()
	if err := stream.Send(&cloudmlv1.FetchImageResponse{Part: &cloudmlv1.FetchImageResponse_Header{
		Header: imageHeader(info),
	}}); err != nil {
		return err
	}
	var sent int64
	buf := make([]byte, imageChunk)
	for {
		k, rerr := io.ReadFull(rc, buf)
		if k > 0 {
			if err := stream.Send(&cloudmlv1.FetchImageResponse{Part: &cloudmlv1.FetchImageResponse_Chunk{Chunk: buf[:k]}}); err != nil {
				return err
			}
			sent += int64(k)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return toStatus(fmt.Errorf("read image %s: %w", name, rerr))
		}
	}
	c.log.Info("image served", "node_id", id, "image", name, "image_id", info.ID, "bytes", sent, "mb_per_s", mbPerSec(sent, time.Since(start)))
	return nil
}

// UploadImage stores an image a node uploads because it was asked to.
func (s *agentServer) UploadImage(stream grpc.ClientStreamingServer[cloudmlv1.UploadImageRequest, cloudmlv1.UploadImageResponse]) error {
	c := s.c
	id, err := nodeIDFrom(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(errorf(ErrInvalid, "upload image: no header was sent"))
	}
	if err != nil {
		return err
	}
	if msg := first.GetError(); first.GetHeader() == nil {
		att := c.exports.pending(id, "")
		if att == nil {
			return toStatus(errorf(ErrNotRequested, "upload image: no image was asked of %s", id))
		}
		if msg == "" {
			msg = "the node sent neither a header nor an error"
		}
		att.finish(errors.New(msg))
		return stream.SendAndClose(&cloudmlv1.UploadImageResponse{})
	}
	h := first.GetHeader()
	info := imagestore.Info{Name: h.GetName(), ID: h.GetId()}
	att := c.exports.pending(id, info.Name)
	if att == nil {
		return toStatus(errorf(ErrNotRequested, "upload image: image %q was not asked of %s", info.Name, id))
	}
	if err := c.checkImageSize(info.Name, h.GetSize()); err != nil {
		att.finish(err)
		return toStatus(err)
	}
	att.begin()
	start := time.Now()
	r := &chunkReader{progress: &att.received, limit: c.imageLimit(info.Name), next: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if m.GetError() != "" {
			return nil, fmt.Errorf("the node gave up: %s", m.GetError())
		}
		if m.GetHeader() != nil {
			return nil, errorf(ErrInvalid, "upload image %s: a second header in the stream", info.Name)
		}
		return m.GetChunk(), nil
	}}
	_, err = c.images.Put(stream.Context(), info, r)
	att.finish(err)
	log := c.log.With("node_id", id, "image", info.Name, "image_id", info.ID)
	if err != nil {
		log.Warn("image upload failed", "bytes", r.n, "error", err)
		return toStatus(err)
	}
	log.Info("image uploaded", "bytes", r.n, "mb_per_s", mbPerSec(r.n, time.Since(start)))
	return stream.SendAndClose(&cloudmlv1.UploadImageResponse{BytesReceived: r.n})
}

// checkImageSize refuses an image whose header announces more than
// Limits.ImageBytes, before its archive is asked for.
func (c *Coordinator) checkImageSize(name string, size int64) error {
	if size > c.cfg.Limits.ImageBytes {
		return c.imageLimit(name).err(size)
	}
	return nil
}

func (c *Coordinator) imageLimit(name string) *imageLimit {
	return &imageLimit{name: name, max: c.cfg.Limits.ImageBytes}
}

// imageLimit is Limits.ImageBytes applied to one image.
type imageLimit struct {
	name string
	max  int64
}

func (l *imageLimit) err(size int64) error {
	return errorf(ErrTooLarge, "image %s: %d bytes or more, more than the limit of %d bytes per image; raise it with `coordinator serve --max-image-bytes`", l.name, size, l.max)
}

// chunkReader reads the chunks of a stream as one archive.
type chunkReader struct {
	next     func() ([]byte, error) // the next chunk; io.EOF at the end
	buf      []byte
	n        int64         // bytes read so far
	progress *atomic.Int64 // also counts n when set
	limit    *imageLimit   // fails the read that goes past it
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		b, err := r.next()
		if err != nil {
			return 0, err
		}
		if r.limit != nil && r.n+int64(len(b)) > r.limit.max {
			return 0, r.limit.err(r.n + int64(len(b)))
		}
		r.buf = b
	}
	k := copy(p, r.buf)
	r.buf = r.buf[k:]
	r.n += int64(k)
	if r.progress != nil {
		r.progress.Add(int64(k))
	}
	return k, nil
}

// mbPerSec is a transfer rate for the logs, in MB/s with one decimal.
func mbPerSec(n int64, d time.Duration) float64 {
	secs := max(d.Seconds(), 1e-3)
	return float64(int64(float64(n)/1e6/secs*10)) / 10
}
