package client

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// DownloadResults copies every row's results (all the objects under its
// results URL) into dir/task-<index>/, reporting each task as one
// transfer. Rows without results are skipped.
func (c *Client) DownloadResults(ctx context.Context, res *cloudmlv1.GetResultsResponse, dir string, p Progress) error {
	for _, r := range res.GetRows() {
		if r.GetResultsUrl() == "" {
			continue
		}
		dst := filepath.Join(dir, "task-"+strconv.Itoa(int(r.GetTaskIndex())))
		if err := downloadPrefix(ctx, r.GetResultsUrl(), dst, "task "+strconv.Itoa(int(r.GetTaskIndex())), p); err != nil {
			return fmt.Errorf("download task %d: %w", r.GetTaskIndex(), err)
		}
	}
	return nil
}

func downloadPrefix(ctx context.Context, url, dst, name string, p Progress) (err error) {
	b, loc, err := bucket.Open(ctx, url)
	if err != nil {
		return err
	}
	defer b.Close()
	prefix := ""
	if loc.Key != "" {
		prefix = strings.TrimSuffix(loc.Key, "/") + "/"
	}
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return err
	}
	var total int64
	for _, o := range objs {
		total += o.Size
	}
	tr := start(p, Transfer{Kind: KindDownload, Name: name, Total: total})
	defer func() { tr.Done(err) }()
	cr := &countingReader{t: tr, total: total}
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		path := filepath.Join(dst, filepath.FromSlash(rel))
		if !strings.HasPrefix(path, filepath.Clean(dst)+string(os.PathSeparator)) {
			return fmt.Errorf("object %q would land outside %s", o.Key, dst)
		}
		if err := downloadObject(ctx, b, o.Key, path, cr); err != nil {
			return err
		}
	}
	cr.flush()
	return nil
}

// downloadObject copies one object to path, counting through cr.
func downloadObject(ctx context.Context, b bucket.Bucket, key, path string, cr *countingReader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	r, err := b.NewReader(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cr.r = r
	if _, err := io.Copy(f, cr); err != nil {
		f.Close()
		return fmt.Errorf("download %s: %w", key, err)
	}
	return f.Close()
}
