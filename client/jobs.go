package client

import (
	"context"
	"fmt"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Job returns a job with every task. An unknown id is NotFound.
func (c *Client) Job(ctx context.Context, id string) (*cloudmlv1.Job, error) {
	resp, err := c.getJobPage(ctx, &cloudmlv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil, err
	}
	return resp.GetJob(), nil
}

// TaskFilter selects the tasks JobTasks returns.
type TaskFilter struct {
	// States keeps only tasks in these states; empty keeps every task.
	States []cloudmlv1.TaskState
	// Limit is the most tasks returned, in index order; 0 returns every
	// selected task.
	Limit int
}

// JobTasks returns a job with the tasks f selects, reading them a page at
// a time, and whether f.Limit left selected tasks out. The job's counts
// by state (TaskStates) cover every task.
func (c *Client) JobTasks(ctx context.Context, id string, f TaskFilter) (job *cloudmlv1.Job, more bool, err error) {
	const pageSize = 1000
	req := &cloudmlv1.GetJobRequest{JobId: id, TaskStates: f.States, PageSize: pageSize}
	var tasks []*cloudmlv1.Task
	for {
		if f.Limit > 0 {
			req.PageSize = int32(min(pageSize, f.Limit-len(tasks)+1)) // one more: are there more?
		}
		resp, err := c.getJobPage(ctx, req)
		if err != nil {
			return nil, false, err
		}
		job = resp.GetJob()
		tasks = append(tasks, job.GetTasks()...)
		if f.Limit > 0 && len(tasks) > f.Limit {
			job.Tasks = tasks[:f.Limit]
			return job, true, nil
		}
		if resp.GetNextPageToken() == "" {
			job.Tasks = tasks
			return job, false, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func (c *Client) getJobPage(ctx context.Context, req *cloudmlv1.GetJobRequest) (*cloudmlv1.GetJobResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.GetJob(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", req.GetJobId(), err)
	}
	return resp, nil
}

// Jobs returns every job, newest first, without their tasks.
func (c *Client) Jobs(ctx context.Context) ([]*cloudmlv1.Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.ListJobs(ctx, &cloudmlv1.ListJobsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return resp.GetJobs(), nil
}

// Cancel stops a job's running attempts and drops its pending tasks, and
// returns the job as it is then. Cancelling an ended job changes nothing.
func (c *Client) Cancel(ctx context.Context, id string) (*cloudmlv1.Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.CancelJob(ctx, &cloudmlv1.CancelJobRequest{JobId: id})
	if err != nil {
		return nil, fmt.Errorf("cancel job %s: %w", id, err)
	}
	return resp.GetJob(), nil
}

// Delete forgets an ended job: its record and the logs the coordinator
// keeps (results in the bucket stay). A job that has not ended is
// FailedPrecondition.
func (c *Client) Delete(ctx context.Context, id string) (*cloudmlv1.DeleteJobResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.DeleteJob(ctx, &cloudmlv1.DeleteJobRequest{JobId: id})
	if err != nil {
		return nil, fmt.Errorf("delete job %s: %w", id, err)
	}
	return resp, nil
}

// Results returns each task's params beside the metrics of its counting
// attempt, best first by the job's objective.
func (c *Client) Results(ctx context.Context, id string) (*cloudmlv1.GetResultsResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.GetResults(ctx, &cloudmlv1.GetResultsRequest{JobId: id})
	if err != nil {
		return nil, fmt.Errorf("results of %s: %w", id, err)
	}
	return resp, nil
}

// Nodes returns every node the coordinator knows, by id.
func (c *Client) Nodes(ctx context.Context) ([]*cloudmlv1.Node, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.ListNodes(ctx, &cloudmlv1.ListNodesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return resp.GetNodes(), nil
}

// ClusterInfo describes the coordinator: its default bucket, provider and
// version.
func (c *Client) ClusterInfo(ctx context.Context) (*cloudmlv1.GetClusterInfoResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.GetClusterInfo(ctx, &cloudmlv1.GetClusterInfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("cluster info: %w", err)
	}
	return resp, nil
}

// Images returns the images the coordinator keeps for nodes without a
// registry, by name.
func (c *Client) Images(ctx context.Context) ([]*cloudmlv1.ImageHeader, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.ListImages(ctx, &cloudmlv1.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return resp.GetImages(), nil
}

// RemoveImage forgets an image name; its archive goes with the last name
// pointing at it. A name a job that has not ended uses is
// FailedPrecondition.
func (c *Client) RemoveImage(ctx context.Context, name string) (*cloudmlv1.DeleteImageResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.jobs.DeleteImage(ctx, &cloudmlv1.DeleteImageRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("remove image %s: %w", name, err)
	}
	return resp, nil
}
