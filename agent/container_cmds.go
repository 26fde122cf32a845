package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/cloudml/cloudml/agent/attempt"
	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/container"
	"github.com/cloudml/cloudml/agent/octave"
	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// octaveMount is where a task container finds the Octave startup file.
const octaveMount = "/cloudml/octave"

// containers is the agent's share of the swarm service machinery.
type containers struct {
	mu       sync.Mutex // protects the fields below
	manager  *container.Manager
	images   *container.Images    // made for the daemon imagesOf
	imagesOf *client.Client       // nil: the node has no daemon
	removals []*cloudmlv1.TaskRef // services to remove, in order
	kick     chan struct{}        // wakes the remover; capacity 1
	closed   bool                 // runContainers ended: no new work
	wg       sync.WaitGroup       // stagings and creations in flight
}

// begin registers a goroutine of container work; false once stopping.
func (c *containers) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// runContainers runs, while ctx lasts, the swarm service watch (used on a
// manager), the task container watch of this node and the service
// removals. Without a Docker daemon it only waits for staging work.
func (a *Agent) runContainers(ctx context.Context) {
	defer func() {
		a.ctr.mu.Lock()
		a.ctr.closed = true
		a.ctr.mu.Unlock()
		a.ctr.wg.Wait()
	}()
	mgr := a.serviceManager()
	if mgr == nil {
		<-ctx.Done()
		return
	}
	node := container.NewNode(container.NodeConfig{
		Docker: a.dockerClient(), Handle: a.attachContainer,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax, Logger: a.log.Named("containers"),
	})
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(ctx) })
	wg.Go(func() { node.Run(ctx) })
	wg.Go(func() { a.removeServices(ctx, mgr) })
	wg.Wait()
}

// serviceManager returns the swarm service manager, making it on first
// use; nil when the agent has no Docker daemon.
func (a *Agent) serviceManager() *container.Manager {
	a.ctr.mu.Lock()
	defer a.ctr.mu.Unlock()
	if a.ctr.manager != nil {
		return a.ctr.manager
	}
	d := a.dockerClient()
	if d == nil {
		return nil
	}
	spec := container.SpecOptions{SwarmRoot: a.cfg.SwarmRoot}
	if env, err := octave.Install(filepath.Join(a.cfg.WorkDir, "octave")); err != nil {
		a.log.Error("cannot install the octave startup file; octave figures will not be saved", "error", err)
	} else if len(env) > 0 {
		// Every node installs it at start, so the bind source exists
		// wherever the swarm places a task.
		spec.Mounts = []mount.Mount{{Type: mount.TypeBind, ReadOnly: true, Target: octaveMount,
			Source: filepath.Join(a.cfg.SwarmRoot, "{{.Node.ID}}", "octave")}}
		spec.Env = octave.Env(octaveMount + "/" + octave.FileName)
	}
	a.ctr.manager = container.NewManager(container.ManagerConfig{
		Docker: d, Reporter: &a.node, Spec: spec, Watch: a.cfg.ServiceWatch,
		CallTimeout: a.cfg.CallTimeout, BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax,
		Logger: a.log.Named("services"),
	})
	return a.ctr.manager
}

// createService creates the swarm service of a swarm attempt; this node is
// the swarm manager. An attempt whose service cannot be made is reported
// failed.
func (a *Agent) createService(ctx context.Context, asg *cloudmlv1.Assignment) {
	if !a.ctr.begin() {
		return
	}
	go func() {
		defer a.ctr.wg.Done()
		log := a.log.With("job_id", asg.GetRef().GetJobId(), "task_index", asg.GetRef().GetTaskIndex(), "attempt", asg.GetRef().GetAttempt())
		mgr := a.serviceManager()
		if mgr == nil {
			_, why := a.swarmManager()
			a.failSwarmAttempt(ctx, asg, "this node cannot create swarm services: no Docker daemon ("+why+")")
			return
		}
		bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
		for {
			err := mgr.CreateService(ctx, asg)
			if err == nil || ctx.Err() != nil {
				return
			}
			if !container.Unreachable(err) {
				log.Error("cannot create the swarm service", "error", err)
				a.failSwarmAttempt(ctx, asg, err.Error())
				return
			}
			// The heartbeat reports the daemon down; try again meanwhile.
			log.Warn("docker daemon unreachable; will retry the service", "error", err)
			if bo.Wait(ctx) != nil {
				return
			}
		}
	}()
}

// failSwarmAttempt reports an attempt failed before it ran.
func (a *Agent) failSwarmAttempt(ctx context.Context, asg *cloudmlv1.Assignment, msg string) {
	rep := container.NewManager(container.ManagerConfig{Reporter: &a.node, CallTimeout: a.cfg.CallTimeout,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax, Logger: a.log})
	if err := rep.ReportFailed(ctx, asg.GetRef(), msg); err != nil {
		a.log.Warn("failure report not acknowledged", "error", err)
	}
}

// removeService queues the removal of ref's service; Cancel is sent to the
// manager for swarm attempts (also after they ended, to clean up).
func (a *Agent) removeService(ref *cloudmlv1.TaskRef) {
	if ref == nil || a.dockerClient() == nil {
		return
	}
	a.ctr.mu.Lock()
	defer a.ctr.mu.Unlock()
	if a.ctr.kick == nil {
		a.ctr.kick = make(chan struct{}, 1)
	}
	a.ctr.removals = append(a.ctr.removals, ref)
	select {
	case a.ctr.kick <- struct{}{}:
	default:
	}
}

// removeServices carries out the queued removals until ctx ends.
func (a *Agent) removeServices(ctx context.Context, mgr *container.Manager) {
	a.ctr.mu.Lock()
	if a.ctr.kick == nil {
		a.ctr.kick = make(chan struct{}, 1)
	}
	kick := a.ctr.kick
	a.ctr.mu.Unlock()
	for {
		a.ctr.mu.Lock()
		refs := a.ctr.removals
		a.ctr.removals = nil
		a.ctr.mu.Unlock()
		for _, ref := range refs {
			err := mgr.RemoveService(ctx, ref)
			switch {
			case err == nil:
			case errdefs.IsUnavailable(err):
				// Not a swarm manager: the cancel was for a local attempt.
				a.log.Debug("not removing a service: not a swarm manager", "error", err)
			default:
				a.log.Warn("remove swarm service", "job_id", ref.GetJobId(), "task_index", ref.GetTaskIndex(), "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
	}
}

// attachContainer takes a task container swarm started on this node and
// runs its attempt through the attempt machinery, at most once per agent.
// When the attempt has been reported the container and its output volume
// are removed; when the agent stops first they are left for the next one.
func (a *Agent) attachContainer(ctx context.Context, f *container.Found) {
	ref := f.Assignment.GetRef()
	key := keyOf(ref)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.attempts[key]; ok {
		a.log.Debug("task container of a known attempt", "job_id", key.job, "task_index", key.task, "attempt", key.attempt)
		return
	}
	a.log.Info("task container found", "job_id", key.job, "task_index", key.task, "attempt", key.attempt, "container_id", f.ContainerID)
	at := attempt.NewAttached(a.attemptConfig(), f.Assignment, f.Attach())
	a.attempts[key] = at
	a.wg.Go(func() {
		at.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err := f.Remove(ctx); err != nil {
			a.log.Warn("clean up task container", "container_id", f.ContainerID, "error", err)
		}
	})
}

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
	err := a.stageInputs(ctx, cmd)
	_, after := a.cache.Stats()
	wg.Wait()
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
	return c.FetchImage(ctx, &cloudmlv1.FetchImageRequest{Image: ref})
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
	if cmd.GetCode().GetUrl() != "" {
		code, err := a.cache.Stage(ctx, cmd.GetCode())
		if err != nil {
			return fmt.Errorf("stage code: %w%s", err, stageHint(err, "was it uploaded? resubmit with --code DIR"))
		}
		if err := relink(code, filepath.Join(dir, "code")); err != nil {
			return err
		}
	}
	for name, src := range cmd.GetData() {
		if !filepath.IsLocal(name) || strings.ContainsRune(name, filepath.Separator) {
			return fmt.Errorf("stage data %q: a data name must be a plain file name", name)
		}
		staged, err := a.cache.Stage(ctx, src)
		if err != nil {
			return fmt.Errorf("stage data %q: %w%s", name, err, stageHint(err, "check the data URL and that the objects are uploaded"))
		}
		if err := relink(staged, filepath.Join(dir, "data", name)); err != nil {
			return err
		}
	}
	return nil
}

func stageHint(err error, missing string) string {
	switch {
	case errors.Is(err, bucket.ErrNotExist):
		return ": " + missing
	case errors.Is(err, archive.ErrUnsafePath):
		return ": the source holds paths that escape its directory; repack it"
	}
	return ""
}

// relink points link at target, replacing an older link atomically.
func relink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + ".tmp" + strconv.Itoa(os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link staged input: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link staged input: %w", err)
	}
	return nil
}
