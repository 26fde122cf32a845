package client

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/jobspec"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// SubmitOptions say how Submit treats local inputs.
type SubmitOptions struct {
	// BaseDir is what relative local paths in the spec are relative to
	// (the directory of cloudml.yaml); empty means the working directory.
	BaseDir string
	// PushImage pushes the spec's image from the local Docker to the
	// coordinator first, when the local Docker has it and the coordinator
	// does not keep that id (PushImage).
	PushImage bool
	// Progress is told about the uploads and the push; nil: nothing is.
	Progress Progress
	// ForcePush replaces an image name another credential pushed.
	ForcePush bool
}

// Submitted is what Submit did.
type Submitted struct {
	// Job is the accepted job, its tasks pending.
	Job *cloudmlv1.Job
	// Uploads are the local code and data sources, in the order code, then
	// data by name.
	Uploads []Upload
	// Image is the image push, nil when none was tried.
	Image *ImagePush
}

// Submit validates spec, uploads its local code and data to the
// coordinator's bucket (UploadSources), pushes its image when asked, and
// submits it. spec is not modified. An invalid spec wraps ErrInvalidSpec
// and nothing is sent.
func (c *Client) Submit(ctx context.Context, spec *cloudmlv1.JobSpec, opts SubmitOptions) (*Submitted, error) {
	if err := jobspec.Validate(spec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	spec = proto.CloneOf(spec)
	out := &Submitted{}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		out.Uploads, err = c.UploadSources(gctx, spec, opts.BaseDir, opts.Progress)
		return err
	})
	if spec.GetImage() != "" && opts.PushImage {
		g.Go(func() error {
			var err error
			out.Image, err = c.PushImage(gctx, spec.GetImage(), PushOptions{Progress: opts.Progress, Force: opts.ForcePush})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return out, err
	}
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.SubmitJob(ctx, &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		return out, fmt.Errorf("submit: %w", err)
	}
	out.Job = resp.GetJob()
	return out, nil
}

// IsBucketURL reports whether a source is already in a bucket (gs:// or
// file://) rather than a local path.
func IsBucketURL(s string) bool {
	return strings.HasPrefix(s, "gs://") || strings.HasPrefix(s, "file://")
}

// maxUploads is how many local sources upload at once.
const maxUploads = 4

// UploadSources uploads the spec's local code and data (paths relative to
// baseDir) to the coordinator's default bucket, each once by content
// digest, and points the spec's sources at them. Sources already in a
// bucket are left alone.
func (c *Client) UploadSources(ctx context.Context, spec *cloudmlv1.JobSpec, baseDir string, p Progress) ([]Upload, error) {
	var local []*cloudmlv1.Source
	if spec.GetCode() != nil && !IsBucketURL(spec.GetCode().GetUrl()) {
		local = append(local, spec.GetCode())
	}
	names := make([]string, 0, len(spec.GetData()))
	for name := range spec.GetData() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if src := spec.GetData()[name]; !IsBucketURL(src.GetUrl()) {
			local = append(local, src)
		}
	}
	if len(local) == 0 {
		return nil, nil
	}
	info, err := c.ClusterInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask the coordinator for its bucket: %w", err)
	}
	b, loc, err := bucket.Open(ctx, info.GetDefaultBucket())
	if err != nil {
		return nil, fmt.Errorf("open the coordinator's bucket %s: %w", info.GetDefaultBucket(), err)
	}
	defer b.Close()
	up := uploader{b: b, prefix: loc.Key, progress: p}
	uploads := make([]Upload, len(local))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxUploads)
	for i, src := range local {
		g.Go(func() error {
			path := src.GetUrl()
			if baseDir != "" && !filepath.IsAbs(path) {
				path = filepath.Join(baseDir, path)
			}
			var err error
			uploads[i], err = up.upload(gctx, path, src)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return uploads, nil
}
