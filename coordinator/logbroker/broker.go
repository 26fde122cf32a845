// Package logbroker is the coordinator's log broker: it stores the output
// agents send (AgentService.PublishLogs and StreamLogs) in the store's
// per-attempt segments (in one file per job), acknowledges what is durable, and fans new output
// out to clients that follow a job (JobService.SubscribeLogs).
//
// It is one of the coordinator's roles, split off as swarmkit's manager
// splits its dispatcher, scheduler and log broker: it keeps its own state
// (the per-job wake-up channels) under its own lock and meets the job
// store through Jobs, a small interface the coordinator implements under
// its own lock: whether a node may send an attempt's logs now, and which
// attempts a subscriber reads. Writing, syncing and reading logs take no
// coordinator lock; a log call takes the job store's lock once, to ask
// whether the attempt is still wanted.
//
// The rule is the coordinator's: commit, then act. A batch is acknowledged
// only once it is durable (the store syncs it in group commits), and a
// terminal report waits for every batch up to its last_log_seq
// (store.AckedSeq). Subscribers may see lines written but not yet synced;
// see Broker.Stream for why that is safe.
package logbroker

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

var (
	// ErrInvalid means a log request is malformed (batches of two
	// attempts on one stream).
	ErrInvalid = errors.New("invalid log request")
	// ErrTooLarge means a log call carries more data than its limit.
	ErrTooLarge = errors.New("log call too large")
	// ErrLogsIncomplete means batches do not follow the stored sequence:
	// the agent resends from its acknowledged seq.
	ErrLogsIncomplete = errors.New("logs incomplete")
	// ErrNotFound means a job was deleted while its logs were read.
	ErrNotFound = errors.New("job not found")
	// ErrStopped means the broker is stopping with the coordinator.
	ErrStopped = errors.New("coordinator is shutting down")
)

// Ref names one attempt.
type Ref struct {
	Job     string
	Task    int32
	Attempt int32
}

func (r Ref) String() string { return fmt.Sprintf("%s/%d/%d", r.Job, r.Task, r.Attempt) }

// RefOf is the Ref of a proto TaskRef.
func RefOf(r *cloudmlv1.TaskRef) Ref {
	return Ref{r.GetJobId(), r.GetTaskIndex(), r.GetAttempt()}
}

// View is what a subscriber reads of a job: its attempts (one task's when
// the request names a task), whether its output is complete (the job is
// final and no attempt is active), and the job's state.
type View struct {
	Attempts []Ref
	Done     bool
	State    cloudmlv1.JobState
}

// Jobs is the job store as the broker sees it.
type Jobs interface {
	// AcceptLogs returns nil when node may send logs of r now, else why
	// not (an error the broker returns as it is): the attempt is unknown,
	// another node's, superseded or given up.
	AcceptLogs(node string, r Ref) error
	// LogView returns what a subscription reads next, once every change
	// made so far is durable; an unknown job or task is an error.
	LogView(req *cloudmlv1.SubscribeLogsRequest) (View, error)
	// HasJob reports whether the job exists.
	HasJob(job string) bool
}

// Config configures a Broker.
type Config struct {
	// Store holds the log segments; required.
	Store *store.Store
	// Jobs is the job store; required.
	Jobs Jobs
	// CallBytes bounds the data of one call or stream message; required.
	CallBytes int
	// Done is closed when the coordinator stops; followers then end.
	Done <-chan struct{}
}

// Validate reports what is missing from cfg.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("logbroker: Store is required"))
	}
	if cfg.Jobs == nil {
		errs = append(errs, errors.New("logbroker: Jobs is required"))
	}
	if cfg.CallBytes <= 0 {
		errs = append(errs, fmt.Errorf("logbroker: CallBytes must be positive, got %d", cfg.CallBytes))
	}
	if cfg.Done == nil {
		errs = append(errs, errors.New("logbroker: Done is required"))
	}
	return errors.Join(errs...)
}

// Broker stores and fans out logs.
type Broker struct {
	cfg   Config
	store *store.Store
	jobs  Jobs

	mu      sync.Mutex // protects waiters
	waiters map[string]chan struct{}
}

// New returns a Broker for cfg.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Broker{cfg: cfg, store: cfg.Store, jobs: cfg.Jobs, waiters: map[string]chan struct{}{}}, nil
}

// Publish stores the batches of a PublishLogs call that continue the
// attempt's sequence, makes them durable, and returns the acknowledged
// seq.
func (b *Broker) Publish(node string, req *cloudmlv1.PublishLogsRequest) (uint64, error) {
	r := RefOf(req.GetRef())
	if err := b.write(node, r, req.GetBatches()); err != nil {
		return 0, err
	}
	// The store serialises writers and reads the ack inside the
	// transaction, so no lock is held across the fsync.
	return b.store.SyncLogs(r.Job, r.Task, r.Attempt)
}

// Carried is the log batches one report carries (ReportTaskRequest's
// log_batches).
type Carried struct {
	Ref     Ref
	Batches []*cloudmlv1.LogBatch
}

// Carry stores the batches that ride a call's reports as Publish would:
// it writes every attempt's, then syncs each, so the attempts of one job
// (one file) share an fsync. errs[i] is carried[i]'s outcome; the caller
// applies a report only once its batches are durable.
func (b *Broker) Carry(node string, carried []Carried) (errs []error) {
	errs = make([]error, len(carried))
	for i, c := range carried {
		errs[i] = b.write(node, c.Ref, c.Batches)
	}
	for i, c := range carried {
		if errs[i] == nil {
			_, errs[i] = b.store.SyncLogs(c.Ref.Job, c.Ref.Task, c.Ref.Attempt)
		}
	}
	return errs
}

// write checks that node may send batches of r and writes those that
// continue its sequence, not yet durable; subscribers see them at once.
func (b *Broker) write(node string, r Ref, batches []*cloudmlv1.LogBatch) error {
	if err := b.checkCall(r, batches); err != nil {
		return err
	}
	if err := b.jobs.AcceptLogs(node, r); err != nil {
		return err
	}
	_, stored, err := b.store.WriteLogs(r.Job, r.Task, r.Attempt, batches)
	if err != nil {
		return err
	}
	if stored > 0 {
		b.Wake(r.Job)
	}
	return nil
}

// checkCall refuses a call (or stream message) whose batches carry more
// than CallBytes of data. (Their records' headers count in the
// per-attempt limit.)
func (b *Broker) checkCall(r Ref, batches []*cloudmlv1.LogBatch) error {
	n := 0
	for _, bt := range batches {
		n += len(bt.GetData())
	}
	if limit := b.cfg.CallBytes; n > limit {
		return fmt.Errorf("%w: logs of %s: %d batches with %d bytes of data, more than the limit of %d bytes per call", ErrTooLarge, r, len(batches), n, limit)
	}
	return nil
}

// waitChan returns a channel closed at the job's next change (new logs or
// state). Take it before reading, so no change is missed.
func (b *Broker) waitChan(job string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch, ok := b.waiters[job]
	if !ok {
		ch = make(chan struct{})
		b.waiters[job] = ch
	}
	return ch
}

// Wake wakes everyone following the job: it has new output, or its state
// changed.
func (b *Broker) Wake(job string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch, ok := b.waiters[job]; ok {
		close(ch)
		delete(b.waiters, job)
	}
}
