package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// chunkSize is the size of the archive chunks an export sends.
const chunkSize = 1 << 20

// Export answers the coordinator's ExportImage: it uploads ref from the
// node's Docker (`docker save`) as a header and 1 MiB chunks, or, when the
// node cannot provide it, one message saying why; the error then wraps
// ErrImageNotFound (or says the node has no Docker).
func (im *Images) Export(ctx context.Context, ref string, open OpenUploadFunc) error {
	start := time.Now() // the daemon may prepare the archive before sending a byte
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // aborts the upload if the save fails midway
	log := im.log.With("image", ref)
	var (
		hdr  *cloudmlv1.ImageHeader
		save io.ReadCloser
		why  error
	)
	if im.docker == nil {
		why = errNoDocker
	} else if insp, err := im.docker.ImageInspect(ctx, ref); isNotFound(err) {
		why = fmt.Errorf("%w: this node's docker does not have image %q", ErrImageNotFound, ref)
	} else if err != nil {
		why = fmt.Errorf("inspect image %q: %w", ref, err)
	} else if save, err = im.docker.ImageSave(ctx, []string{ref}); err != nil {
		why = fmt.Errorf("docker save %q: %w", ref, err)
	} else {
		defer save.Close()
		hdr = &cloudmlv1.ImageHeader{Name: ref, Id: insp.ID, Size: max(insp.Size, 0)}
	}
	up, err := open(ctx)
	if err != nil {
		return fmt.Errorf("open the image upload: %w", err)
	}
	if why != nil {
		if err := send(up, &cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Error{Error: why.Error()}}); err != nil {
			return fmt.Errorf("tell the coordinator the image cannot be exported: %w", err)
		}
		return why
	}
	if err := up.Send(&cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Header{Header: hdr}}); err != nil {
		return uploadErr(up, err)
	}
	log = log.With("image_id", hdr.GetId())
	log.Info("exporting image", "size", hdr.GetSize())
	prog := newProgress(log, "image export progress", hdr.GetSize())
	prog.start = start
	buf := make([]byte, chunkSize)
	for {
		n, rerr := io.ReadFull(save, buf)
		if n > 0 {
			// Send has marshalled the message when it returns, so buf can
			// be refilled.
			if err := up.Send(&cloudmlv1.UploadImageRequest{Part: &cloudmlv1.UploadImageRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				return uploadErr(up, err)
			}
			prog.add(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			cancel() // the coordinator must not keep a truncated archive
			return fmt.Errorf("docker save %q: %w", ref, rerr)
		}
	}
	resp, err := up.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("finish the image upload: %w", err)
	}
	prog.done("image exported")
	log.Debug("coordinator stored the image", "bytes_received", resp.GetBytesReceived())
	return nil
}

// send sends the only message of an upload and waits for the answer.
func send(up ImageUpload, msg *cloudmlv1.UploadImageRequest) error {
	if err := up.Send(msg); err != nil {
		return uploadErr(up, err)
	}
	_, err := up.CloseAndRecv()
	return err
}

// uploadErr is the reason a Send failed: on io.EOF the stream's status.
func uploadErr(up ImageUpload, err error) error {
	if errors.Is(err, io.EOF) {
		_, err = up.CloseAndRecv()
	}
	return fmt.Errorf("upload the image: %w", err)
}

// readMessages reads a daemon's JSON message stream (docker load, docker
// pull) to its end and returns the error it reports, if any.
func readMessages(r io.Reader) error {
	_, err := readStream(r)
	return err
}

// readStream reads the daemon's JSON messages for an error, and returns
// the lines of their "stream" fields (docker load's "Loaded image: ...").
func readStream(r io.Reader) ([]string, error) {
	var lines []string
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the daemon's answer: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return nil, errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return nil, errors.New(m.Error)
		}
		for _, l := range strings.Split(m.Stream, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
	}
}

// progressStep is how often progress is logged at Debug when the size is
// unknown; with a known size it is every 10%, for archives of at least
// largeArchive bytes.
const (
	progressStep = 128 << 20
	largeArchive = 32 << 20
)

// progress logs how an image transfer goes.
type progress struct {
	log   hclog.Logger
	msg   string
	total int64 // 0 if unknown
	n     int64
	next  int64 // bytes at which to log next at Debug
	step  int64
	start time.Time
}

func newProgress(log hclog.Logger, msg string, total int64) *progress {
	p := &progress{log: log, msg: msg, total: total, step: progressStep, start: time.Now()}
	if total >= largeArchive {
		p.step = total / 10
	}
	p.next = p.step
	return p
}

func (p *progress) add(n int) {
	p.n += int64(n)
	if p.n < p.next || (p.total > 0 && p.total < largeArchive) {
		return
	}
	for p.next <= p.n {
		p.next += p.step
	}
	args := []any{"bytes", p.n, "mb_per_s", p.rate()}
	if p.total > 0 {
		args = append(args, "percent", p.n*100/p.total)
	}
	p.log.Debug(p.msg, args...)
}

// done logs the transfer's total at Info.
func (p *progress) done(msg string) {
	p.log.Info(msg, "bytes", p.n, "mb_per_s", p.rate(), "duration", time.Since(p.start).Round(time.Millisecond))
}

func (p *progress) rate() float64 {
	s := time.Since(p.start).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(int64(float64(p.n)/s/1e4)) / 100 // MB/s, 2 decimals
}
