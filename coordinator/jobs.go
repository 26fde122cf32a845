package coordinator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/jobspec"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// jobServer implements JobService.
type jobServer struct {
	cloudmlv1.UnimplementedJobServiceServer
	c *Coordinator
}

// SubmitJob validates, expands and queues a job.
func (s *jobServer) SubmitJob(ctx context.Context, req *cloudmlv1.SubmitJobRequest) (*cloudmlv1.SubmitJobResponse, error) {
	j, err := s.c.submit(req.GetSpec(), callerFrom(ctx).Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.SubmitJobResponse{Job: j}, nil
}

// submit checks a spec against the limits, expands it and stores the job.
// Everything that can refuse it runs before the commit, the size of the
// response included, so a refused job leaves nothing behind. Only the job
// record is written: a task gets a record of its own once it leaves its
// first state (see fillPendingTasks), so a large sweep costs its spec, not
// a record per task.
func (c *Coordinator) submit(spec *cloudmlv1.JobSpec, owner string) (*cloudmlv1.Job, error) {
	if spec == nil {
		return nil, errorf(ErrInvalid, "spec is required")
	}
	spec = proto.Clone(spec).(*cloudmlv1.JobSpec)
	if err := c.cfg.Limits.Spec.Check(spec); err != nil {
		return nil, &kindError{kind: ErrInvalid, err: err}
	}
	if err := checkSources(spec); err != nil {
		return nil, err
	}
	params, err := jobspec.Expand(spec)
	if err != nil {
		return nil, &kindError{kind: ErrInvalid, err: err}
	}
	if len(params) == 0 {
		return nil, errorf(ErrInvalid, "%v: the sweep expands to zero tasks", jobspec.ErrInvalid)
	}
	output := spec.GetOutput()
	if output == "" {
		output = c.cfg.DefaultBucket
	}
	if output == "" {
		return nil, errorf(ErrInvalid, "no output bucket: set output in the job spec or start the coordinator with a default bucket")
	}
	specBytes, err := proto.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	for {
		// The job is built and sized without c.mu (a large sweep takes a
		// while); its id is drawn under it and checked again at the commit.
		c.mu.Lock()
		id := c.newJobID(spec.GetName())
		c.mu.Unlock()
		j := newJobEntry(id, spec, specBytes, output, params, time.Now())
		j.rec.Owner = owner
		if err := c.checkContainerAssignment(j); err != nil {
			return nil, err
		}
		resp := jobProto(j, true)
		if n := proto.Size(&cloudmlv1.SubmitJobResponse{Job: resp}); n > grpcopt.MaxMsgBytes {
			return nil, errorf(ErrTooLarge, "job of %d tasks: its description would be %d bytes, more than the %d bytes of a response; lower the tasks or their parameters", len(params), n, grpcopt.MaxMsgBytes)
		}
		taken := false
		err := c.locked(func() error {
			if _, taken = c.jobs[id]; taken { // drawn by a concurrent submit meanwhile
				return nil
			}
			ch := newChanges()
			ch.job(j.rec)
			if err := c.commit(ch); err != nil {
				return err
			}
			c.putJob(j)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if taken {
			continue
		}
		c.log.Info("job submitted", "job_id", id, "tasks", len(params), "output", output)
		c.poke()
		return resp, nil
	}
}

// newJobEntry is a submitted job with its tasks pending.
func newJobEntry(id string, spec *cloudmlv1.JobSpec, specBytes []byte, output string, params []map[string]string, now time.Time) *jobEntry {
	j := &jobEntry{
		rec: &store.Job{
			ID:         id,
			Spec:       specBytes,
			State:      cloudmlv1.JobState_JOB_STATE_PENDING,
			Output:     output,
			TaskCount:  int32(len(params)),
			CreateTime: now,
		},
		spec:     spec,
		tasks:    make([]*store.Task, len(params)),
		attempts: make([][]*store.Attempt, len(params)),
	}
	for i, p := range params {
		j.tasks[i] = pendingTask(id, i, p)
	}
	return j
}

// checkContainerAssignment refuses a container job whose largest task
// Assignment exceeds Limits.ContainerAssignmentBytes: its swarm service
// would be refused. The parameters are the only part that varies by task.
func (c *Coordinator) checkContainerAssignment(j *jobEntry) error {
	if j.spec.GetImage() == "" {
		return nil
	}
	base := assignmentMsg(j, attemptRef{j.rec.ID, 0, 1}).GetAssignment()
	base.Params = nil
	largest, task := 0, 0
	for i, t := range j.tasks {
		if n := proto.Size(&cloudmlv1.Assignment{Params: t.Params}); n > largest {
			largest, task = n, i
		}
	}
	limit := c.cfg.Limits.ContainerAssignmentBytes
	if n := proto.Size(base) + largest + requestOverhead/16; n > limit {
		return errorf(ErrInvalid, "%v: image: the assignment of task %d would be about %d bytes, more than the limit of %d bytes per task of a container job "+
			"(its swarm service carries it twice, and Docker Swarm refuses services over 1.5 MiB); shorten env, command, data or the parameters", jobspec.ErrInvalid, task, n, limit)
	}
	return nil
}

// pendingTask is task i of a job as submitted.
func pendingTask(job string, i int, params map[string]string) *store.Task {
	return &store.Task{JobID: job, Index: int32(i), Params: params, State: cloudmlv1.TaskState_TASK_STATE_PENDING, Reason: "waiting for the scheduler"}
}

// fillPendingTasks gives the tasks of a loaded job that have no record
// their first state, with their parameters from the sweep: a task is
// stored only once it changed.
func fillPendingTasks(j *jobEntry) error {
	var params []map[string]string
	for i, t := range j.tasks {
		if t != nil {
			continue
		}
		if params == nil {
			var err error
			if params, err = jobspec.Expand(j.spec); err != nil {
				return fmt.Errorf("expand the sweep of its unstarted tasks: %w", err)
			}
			if len(params) != len(j.tasks) {
				return fmt.Errorf("its sweep expands to %d tasks, its record says %d", len(params), len(j.tasks))
			}
		}
		j.tasks[i] = pendingTask(j.rec.ID, i, params[i])
	}
	return nil
}

// newJobID is the name (reduced to [a-z0-9._-]) plus 6 random hex digits.
// Callers hold c.mu.
func (c *Coordinator) newJobID(name string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, name)
	if clean == "" {
		clean = "job"
	}
	for {
		id := clean + "-" + randomHex(3)
		if _, taken := c.jobs[id]; !taken {
			return id
		}
	}
}

// lookup returns the job or ErrNotFound. Callers hold c.mu.
func (c *Coordinator) lookup(id string) (*jobEntry, error) {
	j := c.jobs[id]
	if j == nil {
		return nil, errorf(ErrNotFound, "job %q not found", id)
	}
	return j, nil
}

// GetJob returns a job with its tasks.
func (s *jobServer) GetJob(ctx context.Context, req *cloudmlv1.GetJobRequest) (*cloudmlv1.GetJobResponse, error) {
	c := s.c
	page, err := taskPageOf(req)
	if err != nil {
		return nil, toStatus(err)
	}
	var v *jobView
	err = c.locked(func() error {
		j, err := c.lookup(req.GetJobId())
		if err == nil {
			v = j.viewPage(page)
		}
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &cloudmlv1.GetJobResponse{Job: viewFor(v.proto(), callerFrom(ctx))}
	if v.next > 0 {
		resp.NextPageToken = strconv.Itoa(v.next)
	}
	return resp, nil
}

// taskPageOf is the tasks a GetJob selects. Its page token is the index
// of the first task of the page.
func taskPageOf(req *cloudmlv1.GetJobRequest) (*taskPage, error) {
	p := &taskPage{size: int(req.GetPageSize())}
	if p.size < 0 {
		return nil, errorf(ErrInvalid, "page_size must be 0 (every task) or more, got %d", p.size)
	}
	if tok := req.GetPageToken(); tok != "" {
		start, err := strconv.Atoi(tok)
		if err != nil || start < 0 {
			return nil, errorf(ErrInvalid, "page_token %q is not one a GetJob response gave", tok)
		}
		p.start = start
	}
	for _, st := range req.GetTaskStates() {
		if p.states == nil {
			p.states = map[cloudmlv1.TaskState]bool{}
		}
		p.states[st] = true
	}
	return p, nil
}

// ListJobs returns every job, newest first, without tasks.
func (s *jobServer) ListJobs(ctx context.Context, _ *cloudmlv1.ListJobsRequest) (*cloudmlv1.ListJobsResponse, error) {
	c := s.c
	resp := &cloudmlv1.ListJobsResponse{}
	err := c.locked(func() error {
		jobs := c.orderedJobs()
		for i := len(jobs) - 1; i >= 0; i-- {
			resp.Jobs = append(resp.Jobs, jobProto(jobs[i], false))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	for _, pj := range resp.Jobs {
		viewFor(pj, callerFrom(ctx))
	}
	return resp, nil
}

// CancelJob cancels a job: pending tasks end, running attempts are told to stop.
func (s *jobServer) CancelJob(ctx context.Context, req *cloudmlv1.CancelJobRequest) (*cloudmlv1.CancelJobResponse, error) {
	j, err := s.c.cancel(req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.CancelJobResponse{Job: viewFor(j, callerFrom(ctx))}, nil
}

func (c *Coordinator) cancel(id string) (pj *cloudmlv1.Job, err error) {
	err = c.locked(func() error {
		pj, err = c.cancelLocked(id, time.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	return pj, nil
}

// cancelLocked is cancel's work under c.mu.
func (c *Coordinator) cancelLocked(id string, now time.Time) (*cloudmlv1.Job, error) {
	j, err := c.lookup(id)
	if err != nil {
		return nil, err
	}
	if j.final() {
		return jobProto(j, true), nil
	}
	j.rec.Cancelled = true
	ch := newChanges()
	ch.job(j.rec)
	var stops []attemptRef
	for _, t := range j.tasks {
		a := j.current(t.Index)
		switch {
		case t.State == cloudmlv1.TaskState_TASK_STATE_PENDING:
			t.State = cloudmlv1.TaskState_TASK_STATE_CANCELLED
			t.Reason = "cancelled before it ran"
			t.Note = ""
			ch.task(j, t)
		case a != nil && a.State == cloudmlv1.TaskState_TASK_STATE_ASSIGNED:
			c.cancelAttempt(ch, j, a, now)
			stops = append(stops, refOf(a))
		case a != nil && a.Active():
			stops = append(stops, refOf(a))
		}
	}
	ch.updateJobState(j, now)
	if err := c.commit(ch); err != nil {
		return nil, err
	}
	for _, r := range stops {
		c.stopAttempt(r, j.attempt(r.task, r.attempt), "job cancelled")
	}
	// Over at once (nothing was running): the services of its ended
	// attempts, kept for a batch, go now.
	c.removeJobServices(j)
	c.log.Info("job cancelled", "job_id", id, "stopping", len(stops))
	c.poke()
	return jobProto(j, true), nil
}

// DeleteJob forgets an ended job and its stored logs.
func (s *jobServer) DeleteJob(ctx context.Context, req *cloudmlv1.DeleteJobRequest) (*cloudmlv1.DeleteJobResponse, error) {
	j, freed, err := s.c.deleteJob(req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.DeleteJobResponse{Job: viewFor(j, callerFrom(ctx)), LogBytesFreed: freed}, nil
}

// deleteJob removes an ended job from memory and the store, and returns
// its last record and how many bytes of logs went with it. Its services
// were removed when it ended; its results in the bucket stay. The files
// go without c.mu held: the job is out of c.jobs by then, so nothing
// reads or writes them, and a large log directory does not stall the
// coordinator.
func (c *Coordinator) deleteJob(id string) (*cloudmlv1.Job, int64, error) {
	c.mu.Lock()
	j, err := c.lookup(id)
	if err == nil && (!j.final() || j.activeAttempts() > 0) {
		err = errorf(ErrNotEnded, "job %s has not ended (%s); stop it first with `cloudml-client cancel %s`",
			id, strings.ToLower(strings.TrimPrefix(j.rec.State.String(), "JOB_STATE_")), id)
	}
	if err != nil {
		c.mu.Unlock()
		return nil, 0, err
	}
	last := jobProto(j, false)
	c.dropJob(id)
	seq := c.q.last()
	c.mu.Unlock()
	if err := c.q.Wait(seq); err != nil { // its end is on disk before it goes
		return nil, 0, err
	}

	freed, err := c.store.DeleteJob(id)
	if err != nil {
		c.mu.Lock()
		c.putJob(j) // still stored: keep serving it
		c.mu.Unlock()
		return nil, 0, err
	}
	c.log.Info("job deleted", "job_id", id, "log_bytes_freed", freed)
	return last, freed, nil
}

// cancelAttempt ends an attempt that has not started. Callers hold c.mu.
func (c *Coordinator) cancelAttempt(ch *changes, j *jobEntry, a *store.Attempt, now time.Time) {
	a.State = cloudmlv1.TaskState_TASK_STATE_CANCELLED
	a.ExitCode = -1
	a.Message = "job cancelled"
	a.EndTime = now
	ch.attempt(a)
	t := j.tasks[a.Task]
	t.State = cloudmlv1.TaskState_TASK_STATE_CANCELLED
	t.Reason = "cancelled with its job"
	t.Note = ""
	ch.task(j, t)
	ch.updateJobState(j, now)
}

// GetResults returns one row per task, best first by the objective.
func (s *jobServer) GetResults(ctx context.Context, req *cloudmlv1.GetResultsRequest) (*cloudmlv1.GetResultsResponse, error) {
	c := s.c
	resp := &cloudmlv1.GetResultsResponse{}
	var objective *cloudmlv1.Objective
	err := c.locked(func() error {
		j, err := c.lookup(req.GetJobId())
		if err != nil {
			return err
		}
		resp.Rows = make([]*cloudmlv1.ResultRow, 0, len(j.tasks))
		for _, t := range j.tasks {
			row := &cloudmlv1.ResultRow{TaskIndex: t.Index, State: t.State, Params: t.Params}
			if a := countingAttempt(j, t.Index); a != nil {
				row.Attempt = a.Attempt
				row.Metrics = a.Metrics
				row.ResultsUrl = a.ResultsURL
				row.ExitCode = a.ExitCode
			}
			resp.Rows = append(resp.Rows, row)
		}
		objective, resp.Output, resp.JobState = j.spec.GetObjective(), j.rec.Output, j.rec.State
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Objective = resolveObjective(objective, resp.Rows)
	sortRows(resp.Rows, resp.Objective)
	return resp, nil
}

// countingAttempt is the latest succeeded attempt, else the latest.
func countingAttempt(j *jobEntry, task int32) *store.Attempt {
	list := j.attempts[task]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i] != nil && list[i].State == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
			return list[i]
		}
	}
	return j.current(task)
}

// resolveObjective is the spec's objective, or the first metric name in
// sorted order, minimised; nil when there are no metrics at all.
func resolveObjective(spec *cloudmlv1.Objective, rows []*cloudmlv1.ResultRow) *cloudmlv1.Objective {
	if spec.GetMetric() != "" {
		return proto.Clone(spec).(*cloudmlv1.Objective)
	}
	first := ""
	for _, r := range rows {
		for name := range r.Metrics {
			if first == "" || name < first {
				first = name
			}
		}
	}
	if first == "" {
		return nil
	}
	return &cloudmlv1.Objective{Metric: first}
}

// checkSources requires code and data to be bucket URLs: local paths are
// the client's to upload before it submits.
func checkSources(spec *cloudmlv1.JobSpec) error {
	check := func(field, url string) error {
		if url == "" {
			return nil
		}
		if _, err := bucket.Parse(url); err != nil {
			return errorf(ErrInvalid, "%v: %s: %v (the client uploads local code and data and submits their bucket URLs)", jobspec.ErrInvalid, field, err)
		}
		return nil
	}
	if err := check("code", spec.GetCode().GetUrl()); err != nil {
		return err
	}
	for name, src := range spec.GetData() {
		if err := check("data."+name, src.GetUrl()); err != nil {
			return err
		}
	}
	return nil
}
