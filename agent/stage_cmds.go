package agent

// Staging of container jobs: the code, data and image a job's service
// containers need, made ready on this node before the swarm may place
// them here; and the uploads of images other nodes lack.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudml/cloudml/agent/container"
	"github.com/cloudml/cloudml/internal/atomicfile"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stageJob stages a container job's inputs ahead of swarm placement and
// reports how it went.
func (a *Agent) stageJob(ctx context.Context, client cloudmlv1.AgentServiceClient, cmd *cloudmlv1.StageJob) {
	if !a.ctr.begin() {
		return
	}
	defer a.ctr.wg.Done()
	// The image arrives while the code and data are staged.
	var (
		wg       sync.WaitGroup
		source   string
		imageErr error
	)
	wg.Go(func() { source, imageErr = a.images().Ensure(ctx, cmd.GetImage(), cmd.GetImageId()) })
	_, before := a.cache.Stats()
	stopProgress := a.stageProgress(ctx, client, cmd.GetJobId())
	err := a.stageInputs(ctx, cmd)
	_, after := a.cache.Stats()
	wg.Wait()
	stopProgress()
	if ctx.Err() != nil {
		return
	}
	switch {
	case err == nil:
		err = imageErr
	case imageErr != nil:
		err = fmt.Errorf("%w; %w", err, imageErr)
	}
	req := &cloudmlv1.ReportStageRequest{JobId: cmd.GetJobId(), BytesDownloaded: after - before, ImageSource: source}
	log := a.log.With("job_id", cmd.GetJobId())
	if err != nil {
		req.Error = err.Error()
		log.Error("staging failed", "error", err)
	} else {
		log.Info("job staged", "bytes_downloaded", req.BytesDownloaded, "image", cmd.GetImage(), "image_source", source)
	}
	a.untilAcked(ctx, client, log, "stage report", func(ctx context.Context, c cloudmlv1.AgentServiceClient) error {
		_, err := c.ReportStage(ctx, req)
		return err
	})
}

// stageReportEvery spaces the interim reports of a staging in progress.
const stageReportEvery = time.Second

// stageProgress sends interim ReportStage calls (in_progress) while a job
// stages, each time the bytes received grew, until the returned func is
// called. They count what this node downloads for any job meanwhile (the
// cache and image fetches are shared), and are best effort: one that fails
// is not sent again.
func (a *Agent) stageProgress(ctx context.Context, client cloudmlv1.AgentServiceClient, job string) (stop func()) {
	received := func() int64 { return a.cache.Received() + a.ctr.fetched.Load() }
	base := received()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(stageReportEvery)
		defer tick.Stop()
		var sent int64
		for {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			n := received() - base
			if n <= sent {
				continue
			}
			c := a.node.current()
			if c == nil {
				c = client
			}
			callCtx, cancelCall := context.WithTimeout(ctx, a.cfg.CallTimeout)
			_, err := c.ReportStage(callCtx, &cloudmlv1.ReportStageRequest{JobId: job, BytesDownloaded: n, InProgress: true})
			cancelCall()
			if err == nil {
				sent = n
			}
		}
	}()
	return func() { cancel(); <-done }
}

// images returns the image distributor of the node's current daemon; its
// Ensure does nothing on a node without Docker.
func (a *Agent) images() *container.Images {
	d := a.dockerClient()
	a.ctr.mu.Lock()
	defer a.ctr.mu.Unlock()
	if a.ctr.images == nil || a.ctr.imagesOf != d {
		var docker container.Docker
		if d != nil {
			docker = d
		}
		a.ctr.images = container.NewImages(container.ImagesConfig{Docker: docker, Fetch: a.fetchImage, Logger: a.log.Named("images")})
		a.ctr.imagesOf = d
	}
	return a.ctr.images
}

// fetchImage opens the coordinator's FetchImage stream of ref.
func (a *Agent) fetchImage(ctx context.Context, ref string) (container.ImageStream, error) {
	c := a.node.current()
	if c == nil {
		return nil, errNoConn
	}
	stream, err := c.FetchImage(ctx, &cloudmlv1.FetchImageRequest{Image: ref})
	if err != nil {
		return nil, err
	}
	return countedImageStream{stream, &a.ctr.fetched}, nil
}

// countedImageStream counts the archive bytes a FetchImage stream brings.
type countedImageStream struct {
	container.ImageStream
	n *atomic.Int64
}

func (s countedImageStream) Recv() (*cloudmlv1.FetchImageResponse, error) {
	msg, err := s.ImageStream.Recv()
	s.n.Add(int64(len(msg.GetChunk())))
	return msg, err
}

// exportImage answers ExportImage with one UploadImage stream, in the
// background: the image from this node's Docker, or why it cannot be had.
func (a *Agent) exportImage(ctx context.Context, client cloudmlv1.AgentServiceClient, cmd *cloudmlv1.ExportImage) {
	if !a.ctr.begin() {
		return
	}
	go func() {
		defer a.ctr.wg.Done()
		err := a.images().Export(ctx, cmd.GetImage(), func(ctx context.Context) (container.ImageUpload, error) {
			c := a.node.current()
			if c == nil {
				c = client
			}
			return c.UploadImage(ctx)
		})
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, container.ErrImageNotFound):
			a.log.Info("asked for an image this node does not have", "image", cmd.GetImage())
		default:
			a.log.Warn("image export failed", "image", cmd.GetImage(), "error", err)
		}
	}()
}

// stageInputs stages the code and data of cmd into the cache and links
// them at WorkDir/jobs/<job>/code and .../data/<name>, where the job's
// service containers mount them from.
func (a *Agent) stageInputs(ctx context.Context, cmd *cloudmlv1.StageJob) error {
	job := cmd.GetJobId()
	if job == "" || !filepath.IsLocal(job) || filepath.Base(job) != job {
		return fmt.Errorf("invalid job id %q", job)
	}
	dir := filepath.Join(a.cfg.WorkDir, container.JobDir(job))
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("create job dir: %w", err)
	}
	in, err := a.cache.StageInputs(ctx, cmd.GetCode(), cmd.GetData())
	if err != nil {
		return err
	}
	if in.Code != "" {
		if err := relink(in.Code, filepath.Join(dir, "code")); err != nil {
			return err
		}
	}
	for name, staged := range in.Data {
		if err := relink(staged, filepath.Join(dir, "data", name)); err != nil {
			return err
		}
	}
	return nil
}

// relink points link at target, replacing an older link atomically.
func relink(target, link string) error {
	if err := atomicfile.Symlink(target, link); err != nil {
		return fmt.Errorf("link staged input: %w", err)
	}
	return nil
}
