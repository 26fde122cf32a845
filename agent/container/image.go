package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Where a job's image came from, as ReportStageRequest.image_source says.
const (
	// ImageLocal: the node's Docker had the image.
	ImageLocal = "local"
	// ImageCoordinator: the image was fetched through the mesh (FetchImage).
	ImageCoordinator = "coordinator"
	// ImageRegistry: the image was pulled from a registry.
	ImageRegistry = "registry"
)

// ErrImageNotFound means a Docker daemon does not have an image.
var ErrImageNotFound = errors.New("image not found")

// errNoDocker means the node has no Docker daemon.
var errNoDocker = errors.New("this node has no docker daemon")

// ImageStream is the coordinator's FetchImage stream: a header, then
// chunks of a `docker save` archive.
type ImageStream interface {
	Recv() (*cloudmlv1.FetchImageResponse, error)
}

// ImageUpload is the UploadImage stream that answers ExportImage.
type ImageUpload interface {
	Send(*cloudmlv1.UploadImageRequest) error
	CloseAndRecv() (*cloudmlv1.UploadImageResponse, error)
}

// FetchImageFunc opens the coordinator's FetchImage stream for ref.
type FetchImageFunc func(ctx context.Context, ref string) (ImageStream, error)

// OpenUploadFunc opens an UploadImage stream to the coordinator.
type OpenUploadFunc func(ctx context.Context) (ImageUpload, error)

// ImagesConfig configures Images.
type ImagesConfig struct {
	// Docker is the node's daemon; nil means the node has none, so Ensure
	// does nothing and Export refuses.
	Docker Docker
	// Fetch opens the coordinator's copy of an image.
	Fetch FetchImageFunc
	// Stall ends a fetch from the coordinator in which no data reached
	// docker load for this long while the archive streamed (a hung
	// coordinator or daemon); default 2m. gRPC keepalive only notices a
	// dead connection.
	Stall time.Duration
	// Logger receives progress; nil discards it.
	Logger hclog.Logger
}

// Images makes sure the node's Docker has the images of the jobs it
// stages, and exports images the coordinator asks for.
type Images struct {
	docker Docker
	fetch  FetchImageFunc
	stall  time.Duration
	log    hclog.Logger
	group  singleflight.Group // one ensure per image and id at a time

	mu    sync.Mutex // orders joins; protects joins
	joins int        // Ensure calls that joined or started a flight (tests watch it)
}

// NewImages returns an Images for cfg.
func NewImages(cfg ImagesConfig) *Images {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 2 * time.Minute
	}
	return &Images{docker: cfg.Docker, fetch: cfg.Fetch, stall: cfg.Stall, log: cfg.Logger}
}

// Ensure makes the node's Docker hold ref (with id, when id is set) and
// says where it came from: the node itself, the coordinator, or a
// registry. A node without Docker, or an empty ref, needs nothing ("").
// Concurrent calls for the same image and id share one fetch, which runs
// with the first caller's ctx; every caller waits for it to end, so no
// fetch outlives its callers.
func (im *Images) Ensure(ctx context.Context, ref, id string) (string, error) {
	if ref == "" || im.docker == nil {
		return "", nil
	}
	im.mu.Lock()
	im.joins++
	ch := im.group.DoChan(ref+"\x00"+id, func() (any, error) { return im.ensure(ctx, ref, id) })
	im.mu.Unlock()
	r := <-ch
	src, _ := r.Val.(string)
	return src, r.Err
}

func (im *Images) ensure(ctx context.Context, ref, id string) (string, error) {
	log := im.log.With("image", ref)
	insp, err := im.docker.ImageInspect(ctx, ref)
	switch {
	case err == nil && (id == "" || insp.ID == id):
		return ImageLocal, nil
	case err == nil:
		log.Info("local image differs from the coordinator's copy; fetching it", "local_id", insp.ID, "image_id", id)
	case !isNotFound(err):
		return "", fmt.Errorf("inspect image %q: %w", ref, err)
	}
	fetched, fetchErr := im.fromCoordinator(ctx, log, ref, id)
	if fetched || ctx.Err() != nil {
		if fetchErr != nil {
			return "", fmt.Errorf("image %q: %w", ref, fetchErr)
		}
		return ImageCoordinator, nil
	}
	why := "fetching it from the coordinator failed (" + fetchErr.Error() + ")"
	if c := status.Code(fetchErr); c == codes.NotFound || c == codes.Unimplemented {
		why = "the coordinator has no copy and no node uploaded one"
	}
	log.Info("image not available from the coordinator; pulling it", "reason", fetchErr)
	if err := im.pull(ctx, ref, id); err != nil {
		if insp.ID != "" {
			return "", fmt.Errorf("image %q on this node is %s, not the %s the job runs; %s, and pulling it failed: %w",
				ref, insp.ID, id, why, err)
		}
		return "", fmt.Errorf("image %q is not on this node, %s, and pulling it failed: %w; "+
			"push it from a machine whose Docker has it (cloudml-client submit --image %s) or docker load it on the swarm manager",
			ref, why, err, ref)
	}
	log.Info("image pulled from a registry")
	return ImageRegistry, nil
}

// fromCoordinator loads the coordinator's copy of ref into Docker. It
// reports whether a copy arrived (then err says whether loading it
// worked); when none arrived, err says why.
func (im *Images) fromCoordinator(ctx context.Context, log hclog.Logger, ref, id string) (bool, error) {
	if im.fetch == nil {
		return false, status.Error(codes.Unimplemented, "no coordinator to fetch images from")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil) // ends the stream if the load stops early
	stream, err := im.fetch(ctx, ref)
	if err != nil {
		return false, err
	}
	first, err := stream.Recv()
	if err != nil {
		return false, err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return true, errors.New("the coordinator's image stream did not start with a header")
	}
	want := firstNonEmpty(id, hdr.GetId())
	switch {
	case want == "":
		return true, errors.New("the coordinator's image header has no image id")
	case hdr.GetId() != want:
		return true, fmt.Errorf("the coordinator offers image %s under this name, but the job runs %s", hdr.GetId(), want)
	}
	log = log.With("image_id", want)
	log.Info("loading image from the coordinator", "size", hdr.GetSize())
	prog := newProgress(log, "image load progress", hdr.GetSize())
	loaded, err := im.load(ctx, cancel, stream, prog)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			return true, cause
		}
		return true, err
	}
	if err := im.checkLoaded(ctx, loaded, want); err != nil {
		return true, err
	}
	// Load by id: the archive must have held exactly the announced image,
	// which then gets the job's name whatever the archive called it.
	insp, err := im.docker.ImageInspect(ctx, want)
	if isNotFound(err) {
		return true, fmt.Errorf("the coordinator's archive did not hold image %s: refusing it", want)
	}
	if err != nil {
		return true, fmt.Errorf("inspect the loaded image %s: %w", want, err)
	}
	if insp.ID != want {
		return true, fmt.Errorf("the coordinator's archive loaded image %s, not %s: refusing it", insp.ID, want)
	}
	if cur, err := im.docker.ImageInspect(ctx, ref); err != nil || cur.ID != want {
		if err := im.docker.ImageTag(ctx, want, ref); err != nil {
			return true, fmt.Errorf("tag the loaded image %s as %s: %w", want, ref, err)
		}
		if cur, err := im.docker.ImageInspect(ctx, ref); err != nil || cur.ID != want {
			return true, fmt.Errorf("%s does not name the loaded image %s after tagging it (%s, %v)", ref, want, cur.ID, err)
		}
	}
	prog.done("image loaded from the coordinator")
	return true, nil
}

// checkLoaded checks what docker load says it loaded ("Loaded image: NAME",
// "Loaded image ID: ID"): every image is want. The coordinator checks an
// archive before it keeps it; this is the node's own check of what reached
// its daemon.
func (im *Images) checkLoaded(ctx context.Context, loaded []string, want string) error {
	for _, line := range loaded {
		if id, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
			if id != want {
				return fmt.Errorf("the coordinator's archive loaded image %s, not %s: refusing it", id, want)
			}
			continue
		}
		name, ok := strings.CutPrefix(line, "Loaded image: ")
		if !ok {
			continue
		}
		insp, err := im.docker.ImageInspect(ctx, name)
		if err != nil {
			return fmt.Errorf("inspect %s, which the coordinator's archive loaded: %w", name, err)
		}
		if insp.ID != want {
			return fmt.Errorf("the coordinator's archive loaded %s as image %s, not %s: refusing it", name, insp.ID, want)
		}
	}
	return nil
}

// errStalled is the cause of a fetch ended by Stall.
var errStalled = errors.New("image fetch stalled")

// load pipes the chunks of stream into docker load, never holding more
// than a chunk, and returns what docker load says it loaded. If no chunk
// gets through for the stall time it cancels ctx (stream and load) with an
// errStalled cause.
func (im *Images) load(ctx context.Context, cancel context.CancelCauseFunc, stream ImageStream, prog *progress) ([]string, error) {
	var moved atomic.Int64
	stall := time.AfterFunc(im.stall, func() {
		cancel(fmt.Errorf("%w: no data reached docker load for %s (after %d bytes); "+
			"check the coordinator's log and this node's dockerd", errStalled, im.stall, moved.Load()))
	})
	defer stall.Stop()
	pr, pw := io.Pipe()
	type result struct {
		lines []string
		err   error
	}
	loaded := make(chan result, 1)
	go func() {
		lines, err := im.loadArchive(ctx, pr)
		pr.CloseWithError(fmt.Errorf("docker load ended early: %w", errOr(err, io.ErrClosedPipe)))
		loaded <- result{lines, err}
	}()
	var recvErr error
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			pw.Close()
			break
		}
		if err == nil && msg.GetHeader() != nil {
			err = errors.New("a second header in the image stream")
		}
		if err != nil {
			recvErr = fmt.Errorf("receive the image from the coordinator: %w", err)
			pw.CloseWithError(recvErr) // docker load sees a truncated archive and fails
			break
		}
		if _, err := pw.Write(msg.GetChunk()); err != nil {
			break // the load ended; its error says why
		}
		moved.Add(int64(len(msg.GetChunk()))) // before the reset: a stall reports what arrived
		stall.Reset(im.stall)
		prog.add(len(msg.GetChunk()))
	}
	// docker load (20.10) unpacks the whole archive before it registers
	// anything, which can take minutes after the last byte: not a stall.
	stall.Stop()
	res := <-loaded
	if recvErr != nil {
		return nil, recvErr
	}
	if res.err != nil {
		return nil, fmt.Errorf("docker load: %w", res.err)
	}
	return res.lines, nil
}

// loadArchive runs docker load on r and reads its answer for an error and
// what it loaded.
func (im *Images) loadArchive(ctx context.Context, r io.Reader) ([]string, error) {
	resp, err := im.docker.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if !resp.JSON {
		_, err := io.Copy(io.Discard, resp.Body)
		return nil, err
	}
	return readStream(resp.Body)
}

// pull pulls ref from its registry; when id is set the pulled image must
// be that one.
func (im *Images) pull(ctx context.Context, ref, id string) error {
	rc, err := im.docker.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := readMessages(rc); err != nil {
		return err
	}
	insp, err := im.docker.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("docker does not find the pulled image: %w", err)
	}
	if id != "" && insp.ID != id {
		return fmt.Errorf("the registry's %s is image %s, not %s", ref, insp.ID, id)
	}
	return nil
}

func errOr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
