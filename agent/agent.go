package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/attempt"
	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/octave"
	"github.com/cloudml/cloudml/agent/reportbatch"
	"github.com/cloudml/cloudml/agent/runtime"
	"github.com/cloudml/cloudml/agent/stage"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// longSession is how long a session must live for the reconnect backoff to
// start again from its minimum.
const longSession = 10 * time.Second

// Agent is cloudml-agent: one per node.
type Agent struct {
	cfg   Config
	log   hclog.Logger
	rt    runtime.Runtime
	cache *stage.Cache
	// buckets shares one client per gs bucket among stagings and uploads.
	buckets *bucket.Pool
	memory  int64
	node    nodeConn
	sw      swarmState // the Docker daemon and swarm membership (swarm_cmds.go)
	ctr     containers // swarm services and task containers (container_cmds.go)
	// baseEnv is what the agent sets for every task: the task user's USER
	// and LOGNAME, and the Octave init file's variable (set in Run before
	// any attempt starts). Of Config.Env tasks get only runtime.HostEnv.
	baseEnv []string

	mu       sync.Mutex // protects the fields below
	nodeID   string
	attempts map[refKey]*attempt.Attempt // running and finished, at most once each
	wg       sync.WaitGroup              // running attempts
}

// refKey identifies an attempt.
type refKey struct {
	job     string
	task    int32
	attempt int32
}

func keyOf(r *cloudmlv1.TaskRef) refKey {
	return refKey{r.GetJobId(), r.GetTaskIndex(), r.GetAttempt()}
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.Named("agent")
	work, err := realPath(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("%w: work dir: %v", ErrConfig, err)
	}
	cfg.WorkDir = work
	user, err := cfg.taskUser()
	if err != nil {
		return nil, err
	}
	if user == nil {
		u := runtime.CurrentUser()
		user = &u
		if cfg.Runtime == nil {
			cfg.Runtime, err = runtime.NewProcess(runtime.ProcessConfig{WorkDir: work, Secrets: SecretsDir(work)})
		}
	} else if cfg.Runtime == nil {
		cfg.Runtime, err = runtime.NewProcess(runtime.ProcessConfig{User: user, WorkDir: work, Secrets: SecretsDir(work)})
	}
	if err != nil {
		return nil, err
	}
	if d, ok := cfg.Runtime.(interface{ Isolation() string }); ok {
		log.Info("process tasks isolated", "how", d.Isolation())
	}
	a := &Agent{
		cfg:      cfg,
		log:      log,
		rt:       cfg.Runtime,
		baseEnv:  []string{"USER=" + user.Name, "LOGNAME=" + user.Name},
		memory:   memoryBytes(),
		attempts: map[refKey]*attempt.Attempt{},
	}
	a.node.reports = reportbatch.New(directReports{&a.node}, cfg.CallTimeout)
	// Lent tokens come over the node's connection, whichever it is then.
	a.buckets = bucket.NewPoolWith(bucketOptions(cfg, &a.node))
	a.cache = &stage.Cache{Dir: filepath.Join(cfg.WorkDir, "cache"), Logger: log.Named("stage"), Open: cfg.OpenBucket, Buckets: a.buckets}
	if cfg.BucketAuth == BucketAuthCoordinator {
		log.Info("gs buckets use tokens the coordinator lends")
	}
	return a, nil
}

// openBucket opens an output bucket: Config.OpenBucket, or through the
// pool.
func (a *Agent) openBucket(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
	if a.cfg.OpenBucket != nil {
		return a.cfg.OpenBucket(ctx, rawURL)
	}
	return a.buckets.Open(ctx, rawURL)
}

// CacheStats returns the staging cache's download counters.
func (a *Agent) CacheStats() (downloads, bytes int64) { return a.cache.Stats() }

// Run registers if needed, then holds a session with the coordinator and
// carries out its assignments until ctx is cancelled. It then stops the
// running attempts (SIGTERM, SIGKILL after the grace period), waits for
// them and returns nil. It returns an error only when it cannot go on: a
// refused join token (ErrBadToken), no token at all (ErrNoToken), or an unusable
// work directory.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.WorkDir, 0o711); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	// Searchable, not listable: tasks of another user reach their own
	// directories beneath it; the secrets directory is 0700.
	if err := os.Chmod(a.cfg.WorkDir, 0o711); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if err := a.prepareSecretsDir(); err != nil {
		return err
	}
	// Octave scripts that draw figures run headless; open figures are
	// saved as PNGs into the task's outputs (see agent/octave).
	a.log.Debug("agent starting: installing the octave init file")
	octaveEnv, err := octave.Install(filepath.Join(a.cfg.WorkDir, "octave"))
	if err != nil {
		return err
	}
	a.baseEnv = append(a.baseEnv, octaveEnv...)
	defer a.buckets.Close() // last: after the attempts and stagings
	a.startDocker(ctx)
	defer a.stopDocker()
	defer a.node.close()

	runCtx, stop := context.WithCancel(ctx)
	a.wg.Go(func() { a.runContainers(runCtx) }) // container_cmds.go
	err = a.loop(runCtx)
	stop()      // a fatal error stops the attempts too
	a.wg.Wait() // attempts stop themselves when runCtx ends
	if ctx.Err() != nil {
		a.log.Info("agent stopped")
		return nil
	}
	return err
}

func (a *Agent) loop(ctx context.Context) error {
	bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for ctx.Err() == nil {
		id, err := a.ensureIdentity(ctx)
		if err != nil {
			return err
		}
		client, err := a.node.use(a, id)
		if err != nil {
			return fmt.Errorf("dial coordinator %s: %w", a.cfg.CoordinatorAddr, err)
		}
		lived, err := a.session(ctx, client, id)
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.Unauthenticated {
			a.log.Warn("coordinator refused the node certificate; registering again", "node_id", id.NodeID, "error", err)
			a.forgetIdentity()
		} else {
			a.log.Warn("session ended; reconnecting", "lived", lived, "error", err)
		}
		if lived > longSession {
			bo.Reset()
		}
		if err := bo.Wait(ctx); err != nil {
			return nil
		}
	}
	return nil
}

// running returns the attempts whose end is not yet acknowledged.
func (a *Agent) running() []*cloudmlv1.TaskRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	var refs []*cloudmlv1.TaskRef
	for _, at := range a.attempts {
		select {
		case <-at.Done():
		default:
			refs = append(refs, at.Ref())
		}
	}
	return refs
}

// assign starts asg unless this agent already has that attempt.
func (a *Agent) assign(ctx context.Context, asg *cloudmlv1.Assignment) {
	ref := asg.GetRef()
	if ref == nil {
		a.log.Warn("ignoring assignment without a task ref")
		return
	}
	if asg.GetSwarmService() {
		a.createService(ctx, asg) // this node is the swarm manager
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := keyOf(ref)
	if _, ok := a.attempts[key]; ok {
		a.log.Debug("ignoring repeated assignment", "job_id", key.job, "task_index", key.task, "attempt", key.attempt)
		return
	}
	at := attempt.New(a.attemptConfig(), asg)
	a.attempts[key] = at
	a.wg.Go(func() { at.Run(ctx) })
}

// attemptConfig is what every attempt shares; a.mu must be held.
func (a *Agent) attemptConfig() attempt.Config {
	return attempt.Config{
		Client: &a.node, Cache: a.cache, Runtime: a.rt, OpenBucket: a.openBucket,
		NodeID: a.nodeID, Dir: filepath.Join(a.cfg.WorkDir, "attempts"), HostEnv: a.cfg.Env, BaseEnv: a.baseEnv,
		KillGrace: a.cfg.KillGrace, CallTimeout: a.cfg.CallTimeout,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax,
		LogBatchBytes: a.cfg.LogBatchBytes, LogFlushInterval: a.cfg.LogFlushInterval,
		StagingDelay: a.cfg.StagingDelay, Logger: a.log.Named("attempt"),
	}
}

// cancel stops an attempt if this agent runs it, and removes its swarm
// service if this node is the swarm manager.
func (a *Agent) cancel(c *cloudmlv1.Cancel) {
	a.removeService(c.GetRef()) // container_cmds.go
	a.mu.Lock()
	at, ok := a.attempts[keyOf(c.GetRef())]
	a.mu.Unlock()
	if !ok {
		a.log.Debug("cancel for an unknown attempt", "job_id", c.GetRef().GetJobId(), "task_index", c.GetRef().GetTaskIndex())
		return
	}
	at.Cancel(c.GetReason())
}

var errProtocol = errors.New("protocol error")
