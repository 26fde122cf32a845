package client

import (
	"context"
	"errors"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrStillStaging ends the Tracker of a node that had not finished staging
// when WaitStaged stopped watching (a task started without it, or the job
// ended).
var ErrStillStaging = errors.New("still staging")

// StageOptions shape WaitStaged.
type StageOptions struct {
	// Progress is told about each node's staging (KindStage); nil: nothing
	// is.
	Progress Progress
	// Interval is how often the job is read; default 500ms.
	Interval time.Duration
	// StartWithin bounds the wait for the first node to be asked to stage:
	// a job no swarm node can take (see its tasks' reasons) is not staged
	// at all. Default 3s.
	StartWithin time.Duration
}

// WaitStaged follows the staging of a container job (Job.stages) until
// every node asked has staged or failed to, a task has started, or the job
// has ended, reporting each node's bytes to opts.Progress. It returns the
// job as last read. A job with no image never stages: WaitStaged returns
// it once StartWithin has passed without a node asked.
func (c *Client) WaitStaged(ctx context.Context, jobID string, opts StageOptions) (*cloudmlv1.Job, error) {
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.StartWithin <= 0 {
		opts.StartWithin = 3 * time.Second
	}
	w := stageWatch{c: c, p: opts.Progress, trackers: map[string]Tracker{}, done: map[string]bool{}}
	defer w.close()
	deadline := time.Now().Add(opts.StartWithin)
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for {
		job, err := c.Job(ctx, jobID)
		if err != nil {
			return nil, err
		}
		w.update(ctx, job)
		if stagingOver(job) || (len(job.GetStages()) == 0 && time.Now().After(deadline)) {
			return job, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return job, ctx.Err()
		}
	}
}

// stagingOver reports whether nothing is left to wait for.
func stagingOver(job *cloudmlv1.Job) bool {
	switch job.GetState() {
	case cloudmlv1.JobState_JOB_STATE_PENDING:
	case cloudmlv1.JobState_JOB_STATE_RUNNING:
		for _, t := range job.GetTasks() {
			if t.GetState() != cloudmlv1.TaskState_TASK_STATE_PENDING {
				return true
			}
		}
	default:
		return true
	}
	if len(job.GetStages()) == 0 {
		return false
	}
	for _, s := range job.GetStages() {
		if s.GetState() == cloudmlv1.StageState_STAGE_STATE_STAGING {
			return false
		}
	}
	return true
}

// stageWatch turns successive reads of a job into Tracker calls.
type stageWatch struct {
	c        *Client
	p        Progress
	nodes    map[string]*cloudmlv1.Node
	trackers map[string]Tracker
	done     map[string]bool
}

func (w *stageWatch) update(ctx context.Context, job *cloudmlv1.Job) {
	for _, s := range job.GetStages() {
		id := s.GetNodeId()
		if w.done[id] {
			continue
		}
		tr, ok := w.trackers[id]
		if !ok {
			tr = start(w.p, Transfer{Kind: KindStage, Name: id, Node: w.node(ctx, id)})
			w.trackers[id] = tr
		}
		tr.Update(s.GetBytesDownloaded(), 0)
		switch s.GetState() {
		case cloudmlv1.StageState_STAGE_STATE_STAGED:
			tr.Done(nil)
		case cloudmlv1.StageState_STAGE_STATE_FAILED:
			tr.Done(errors.New(s.GetError()))
		default:
			continue
		}
		w.done[id] = true
	}
}

// node looks a node up, listing the nodes again when it is new.
func (w *stageWatch) node(ctx context.Context, id string) *cloudmlv1.Node {
	if n, ok := w.nodes[id]; ok || w.p == nil {
		return n
	}
	w.nodes = map[string]*cloudmlv1.Node{}
	if nodes, err := w.c.Nodes(ctx); err == nil {
		for _, n := range nodes {
			w.nodes[n.GetId()] = n
		}
	}
	return w.nodes[id]
}

// close ends the trackers of nodes still staging.
func (w *stageWatch) close() {
	for id, tr := range w.trackers {
		if !w.done[id] {
			tr.Done(ErrStillStaging)
		}
	}
}
