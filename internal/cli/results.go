package cli

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

func (a *App) results(ctx context.Context, args []string) error {
	fs := a.newFlags("results", "cloudml-client results JOB [--download DIR]: params beside metrics, best first by the job's objective")
	download := fs.String("download", "", "also download every task's results into DIR/task-<index>/")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := oneJobArg("results", pos)
	if err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	res, err := a.jobs.GetResults(cctx, &cloudmlv1.GetResultsRequest{JobId: id})
	if err != nil {
		return fmt.Errorf("results of %s: %w", id, err)
	}
	if *download != "" {
		if err := a.downloadResults(ctx, res, *download); err != nil {
			return err
		}
	}
	if a.json() {
		return a.printJSON(res)
	}
	return a.printResults(id, res)
}

func (a *App) printResults(id string, res *cloudmlv1.GetResultsResponse) error {
	params, metrics := map[string]bool{}, map[string]bool{}
	for _, r := range res.Rows {
		for k := range r.Params {
			params[k] = true
		}
		for k := range r.Metrics {
			metrics[k] = true
		}
	}
	pnames, mnames := sortedKeys(params), sortedKeys(metrics)
	obj := res.GetObjective()
	goal := "min"
	if obj.GetMaximize() {
		goal = "max"
	}
	fmt.Fprintf(a.Stdout, "job %s: %s; ranked by %s (%s); results in %s\n\n", id, jobState(res.JobState), orDash(obj.GetMetric()), goal, res.Output)
	w := a.table()
	head := []string{"RANK", "TASK", "STATE"}
	for _, p := range pnames {
		head = append(head, p)
	}
	for _, m := range mnames {
		if m == obj.GetMetric() {
			m = "*" + m
		}
		head = append(head, strings.ToUpper(m))
	}
	row(w, head...)
	for i, r := range res.Rows {
		cells := []string{strconv.Itoa(i + 1), strconv.Itoa(int(r.TaskIndex)), taskState(r.State)}
		for _, p := range pnames {
			cells = append(cells, orDash(r.Params[p]))
		}
		for _, m := range mnames {
			v, ok := r.Metrics[m]
			cells = append(cells, map[bool]string{true: num(v), false: "-"}[ok])
		}
		row(w, cells...)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(res.Rows) > 0 {
		if best := res.Rows[0]; best.Metrics[obj.GetMetric()] != 0 || len(best.Metrics) > 0 {
			fmt.Fprintf(a.Stdout, "\nbest: task %d (%s) %s=%s\n", best.TaskIndex, kv(best.Params, str), obj.GetMetric(), num(best.Metrics[obj.GetMetric()]))
		}
	}
	return nil
}

// downloadResults copies every row's results prefix into dir/task-<index>/.
func (a *App) downloadResults(ctx context.Context, res *cloudmlv1.GetResultsResponse, dir string) error {
	for _, r := range res.Rows {
		if r.ResultsUrl == "" {
			continue
		}
		dst := filepath.Join(dir, "task-"+strconv.Itoa(int(r.TaskIndex)))
		if err := downloadPrefix(ctx, r.ResultsUrl, dst); err != nil {
			return fmt.Errorf("download task %d: %w", r.TaskIndex, err)
		}
	}
	fmt.Fprintf(a.Stderr, "downloaded results into %s\n", dir)
	return nil
}

func downloadPrefix(ctx context.Context, url, dst string) error {
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
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		path := filepath.Join(dst, filepath.FromSlash(rel))
		if !strings.HasPrefix(path, filepath.Clean(dst)+string(os.PathSeparator)) {
			return fmt.Errorf("object %q would land outside %s", o.Key, dst)
		}
		if err := downloadObject(ctx, b, o.Key, path); err != nil {
			return err
		}
	}
	return nil
}

func downloadObject(ctx context.Context, b bucket.Bucket, key, path string) error {
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
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("download %s: %w", key, err)
	}
	return f.Close()
}
