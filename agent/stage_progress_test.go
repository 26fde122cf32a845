package agent

import (
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/cloudml/cloudml/agent/internal/membucket"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// gatedBucket hands out readers that stop halfway until gate is closed.
type gatedBucket struct {
	bucket.Bucket
	gate chan struct{}
}

func (b gatedBucket) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := b.Bucket.NewReader(ctx, key)
	if err != nil {
		return nil, err
	}
	attrs, err := b.Attrs(ctx, key)
	if err != nil {
		r.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(r, attrs.Size/2), gateReader(b.gate), r), r}, nil
}

// gateReader blocks until its channel is closed, then reads as empty.
type gateReader chan struct{}

func (g gateReader) Read([]byte) (int, error) {
	<-g
	return 0, io.EOF
}

// TestStagingReportsProgress: while a job stages, the agent sends interim
// reports with the bytes so far, then the final report.
func TestStagingReportsProgress(t *testing.T) {
	f, dial := newImageFake(t)
	b := membucket.New("b")
	body := make([]byte, 512<<10)
	rand.Read(body) // incompressible: the archive stays about as large
	code := packCode(t, b, map[string]string{"weights.bin": string(body)})
	gate := make(chan struct{})
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.SwarmRoot = t.TempDir()
	open := b.Opener()
	cfg.OpenBucket = func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
		bk, loc, err := open(ctx, rawURL)
		return gatedBucket{bk, gate}, loc, err
	}
	startAgent(t, cfg)
	const node = "node-1"

	f.sendTo(t, node, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_StageJob{StageJob: &cloudmlv1.StageJob{JobId: "j1", Code: code}}})
	f.wait(t, "an interim stage report", func() bool { return len(f.interim) > 0 })
	f.mu.Lock()
	first := f.interim[0]
	f.mu.Unlock()
	if first.GetJobId() != "j1" || first.GetBytesDownloaded() < 128<<10 || first.GetError() != "" {
		t.Errorf("interim report %v; want j1 with the first half of the archive", first)
	}
	close(gate)
	f.wait(t, "the final stage report", func() bool { return f.stages[node] != nil })
	f.mu.Lock()
	final := f.stages[node]
	f.mu.Unlock()
	if final.GetInProgress() || final.GetError() != "" || final.GetBytesDownloaded() < int64(len(body)) {
		t.Errorf("final report %v; want success with the whole archive", final)
	}
}
