package coordinator

import (
	"fmt"
	stdbits "math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// attemptRef names one attempt.
type attemptRef struct {
	job     string
	task    int32
	attempt int32
}

func (r attemptRef) String() string { return fmt.Sprintf("%s/%d/%d", r.job, r.task, r.attempt) }

func refOf(a *store.Attempt) attemptRef { return attemptRef{a.JobID, a.Task, a.Attempt} }

func refFromProto(r *cloudmlv1.TaskRef) attemptRef {
	return attemptRef{r.GetJobId(), r.GetTaskIndex(), r.GetAttempt()}
}

func (r attemptRef) proto() *cloudmlv1.TaskRef {
	return &cloudmlv1.TaskRef{JobId: r.job, TaskIndex: r.task, Attempt: r.attempt}
}

// nodeEntry is a node's record plus what is kept only in memory.
type nodeEntry struct {
	rec *store.Node
	// session is the node's place in the dispatcher (its open session, and
	// since when it has none), read without a lock.
	session *dispatch.Node
}

// addNode adds n to nodes and byID, replacing the entry of the same id. A
// node new to the dispatcher counts as without a session since now.
// Callers hold c.mu or own c alone.
func (c *Coordinator) addNode(n *nodeEntry, now time.Time) {
	n.session = c.disp.Node(n.rec.ID, now)
	c.nodes[n.rec.ID] = n
	if k, err := strconv.Atoi(strings.TrimPrefix(n.rec.ID, "node-")); err == nil {
		c.topNode = max(c.topNode, k)
	}
	i, found := slices.BinarySearchFunc(c.byID, n.rec.ID, func(e *nodeEntry, id string) int { return strings.Compare(e.rec.ID, id) })
	if found {
		c.byID[i] = n
		return
	}
	c.byID = slices.Insert(c.byID, i, n)
}

// maxSlots is the node's slot cap: its token's, else the default.
func (n *nodeEntry) maxSlots(cfg Config) int32 {
	if n.rec.MaxSlots > 0 {
		return n.rec.MaxSlots
	}
	return cfg.MaxNodeSlots
}

// maxMemory is the node's memory cap: its token's, else the default.
func (n *nodeEntry) maxMemory(cfg Config) int64 {
	if n.rec.MaxMemoryBytes > 0 {
		return n.rec.MaxMemoryBytes
	}
	return cfg.MaxNodeMemoryBytes
}

// jobEntry is a job with its tasks and attempts.
type jobEntry struct {
	rec      *store.Job
	spec     *cloudmlv1.JobSpec
	tasks    []*store.Task
	attempts [][]*store.Attempt // [task][attempt-1]
	// staging tracks a container job's StageJob per node: absent = not
	// sent, stagePending = sent, "" = staged, otherwise the error. In memory
	// only: after a restart every node stages again (a cache hit).
	staging map[string]string
	// stageBytes is what each node reported downloading for staging, so
	// far or in all; set with staging.
	stageBytes map[string]int64
	// endedServices are swarm attempts that ended and whose services are
	// not removed yet; removedServices are those removed in a batch. In
	// memory only: when the job ends, every swarm attempt's service is
	// removed, so a restart loses nothing but a batch.
	endedServices   []attemptRef
	removedServices map[attemptRef]bool
	// platformFails counts each task's platform failures in a row and
	// notBefore holds it back until its backoff ends (platformRetry). In
	// memory only: a restart places such tasks at once, one time.
	platformFails map[int32]int
	notBefore     map[int32]time.Time
	// stageFails counts each node's staging failures in a row and
	// restageAfter is when it is asked to stage again (restageAt). In
	// memory only, like staging.
	stageFails   map[string]int
	restageAfter map[string]time.Time
	// tally counts the tasks in each state as last recorded (changes.task)
	// and counted is the state each task is counted in; active holds the
	// tasks whose current attempt is active, with what that attempt holds,
	// and pending those waiting to be placed, one bit per task; onNode
	// sums what the active attempts hold on each node. So a report costs
	// the same whatever the job's size, the scheduler learns each node's
	// free slots without visiting an attempt, and node checks and
	// reconnects visit only the tasks they concern. Built on first use
	// (tallied).
	tally   []int // by cloudmlv1.TaskState
	counted []cloudmlv1.TaskState
	active  map[int32]held
	onNode  map[string]nodeUse
	pending []uint64
	// waiting is why the job's pending tasks from waitingFrom on were not
	// placed in the last scheduling pass, which stopped at the first of
	// them: their Reason is this, not what each holds (viewPage).
	waiting     string
	waitingFrom int32
}

// held is what an active task's current attempt holds: its slots on its
// node (none while that attempt is not active, or a swarm attempt's node
// is not known yet).
type held struct {
	node  string
	slots int32
}

// nodeUse is what the active attempts of a job hold on one node.
type nodeUse struct {
	slots, attempts int32
}

// tallied builds the tally from the tasks unless it is built.
func (j *jobEntry) tallied() {
	if j.counted != nil {
		return
	}
	j.tally = make([]int, len(cloudmlv1.TaskState_name))
	j.counted = make([]cloudmlv1.TaskState, len(j.tasks))
	j.active = map[int32]held{}
	j.onNode = map[string]nodeUse{}
	j.pending = make([]uint64, (len(j.tasks)+63)/64)
	for i, t := range j.tasks {
		j.counted[i] = cloudmlv1.TaskState_TASK_STATE_UNSPECIFIED
		j.tally[cloudmlv1.TaskState_TASK_STATE_UNSPECIFIED]++
		j.count(t)
	}
}

// count moves t to its state in the tally.
func (j *jobEntry) count(t *store.Task) {
	j.tallied()
	j.hold(t)
	old := j.counted[t.Index]
	if old == t.State {
		return
	}
	j.tally[old]--
	j.tally[t.State]++
	j.counted[t.Index] = t.State
	bit := uint64(1) << (t.Index % 64)
	if t.State == cloudmlv1.TaskState_TASK_STATE_PENDING {
		j.pending[t.Index/64] |= bit
	} else {
		j.pending[t.Index/64] &^= bit
	}
}

// hold records what t's current attempt holds while t is active, in
// active and onNode. Called on every change of t's state (count) and
// when a swarm attempt learns its node (claim), the two things that
// change what an attempt holds.
func (j *jobEntry) hold(t *store.Task) {
	j.tallied()
	if h, ok := j.active[t.Index]; ok {
		j.addUse(h, -1)
		delete(j.active, t.Index)
	}
	if !store.ActiveState(t.State) {
		return
	}
	var h held
	if a := j.current(t.Index); a != nil && a.Active() && a.NodeID != "" {
		h = held{a.NodeID, a.Slots}
		j.addUse(h, 1)
	}
	j.active[t.Index] = h
}

// addUse adds what h holds to onNode (sign 1) or takes it away (sign -1).
func (j *jobEntry) addUse(h held, sign int32) {
	if h.node == "" {
		return
	}
	u := j.onNode[h.node]
	u.slots += sign * h.slots
	u.attempts += sign
	if u.attempts == 0 {
		delete(j.onNode, h.node)
		return
	}
	j.onNode[h.node] = u
}

// use is what j's active attempts hold on each node, by node id.
func (j *jobEntry) use() map[string]nodeUse {
	j.tallied()
	return j.onNode
}

// inState is how many tasks are in any of states.
func (j *jobEntry) inState(states ...cloudmlv1.TaskState) int {
	j.tallied()
	n := 0
	for _, s := range states {
		n += j.tally[s]
	}
	return n
}

// activeTasks are the tasks whose current attempt is active, by index.
func (j *jobEntry) activeTasks() []int32 {
	j.tallied()
	out := make([]int32, 0, len(j.active))
	for i := range j.active {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// pendingTasks yields the pending tasks by index. Tasks it yields may be
// placed meanwhile; one that becomes pending meanwhile may be missed.
func (j *jobEntry) pendingTasks(yield func(*store.Task) bool) {
	j.tallied()
	for w := range j.pending {
		for bits := j.pending[w]; bits != 0; bits &= bits - 1 {
			if !yield(j.tasks[w*64+stdbits.TrailingZeros64(bits)]) {
				return
			}
		}
	}
}

// restageAt reports whether node's failed staging is due to be asked
// again, and starts its backoff (platformBackoff) when it was not waiting.
func (j *jobEntry) restageAt(node string, now time.Time) bool {
	if j.restageAfter == nil {
		j.stageFails, j.restageAfter = map[string]int{}, map[string]time.Time{}
	}
	at, waiting := j.restageAfter[node]
	if !waiting {
		j.stageFails[node]++
		j.restageAfter[node] = now.Add(platformBackoff(j.stageFails[node]))
		return false
	}
	if now.Before(at) {
		return false
	}
	delete(j.restageAfter, node)
	return true
}

// restaging reports whether node stages j again after a failure.
func (j *jobEntry) restaging(node string) bool { return j.stageFails[node] > 0 }

// Platform failures are placed again after platformBackoffMin, doubling
// with each one in a row up to platformBackoffMax.
const (
	platformBackoffMin = time.Second
	platformBackoffMax = 30 * time.Second
)

// platformBackoff is the wait after the n-th platform failure in a row.
func platformBackoff(n int) time.Duration {
	d := platformBackoffMin
	for i := 1; i < n && d < platformBackoffMax; i++ {
		d *= 2
	}
	return min(d, platformBackoffMax)
}

// platformRetry records a platform failure of task and returns how long it
// waits before it is placed again.
func (j *jobEntry) platformRetry(task int32, now time.Time) time.Duration {
	if j.platformFails == nil {
		j.platformFails, j.notBefore = map[int32]int{}, map[int32]time.Time{}
	}
	j.platformFails[task]++
	d := platformBackoff(j.platformFails[task])
	j.notBefore[task] = now.Add(d)
	return d
}

// heldBack returns how long task still waits after a platform failure, 0
// when it may be placed.
func (j *jobEntry) heldBack(task int32, now time.Time) time.Duration {
	if until, ok := j.notBefore[task]; ok && now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

// ranOnPlatform clears task's platform failures once an attempt of it ran.
func (j *jobEntry) ranOnPlatform(task int32) {
	delete(j.platformFails, task)
	delete(j.notBefore, task)
}

func (j *jobEntry) attempt(task, n int32) *store.Attempt {
	if task < 0 || int(task) >= len(j.attempts) || n < 1 || int(n) > len(j.attempts[task]) {
		return nil
	}
	return j.attempts[task][n-1]
}

// current returns the task's latest attempt, nil before the first.
func (j *jobEntry) current(task int32) *store.Attempt {
	return j.attempt(task, j.tasks[task].Attempt)
}

// final reports whether the job reached a final state.
func (j *jobEntry) final() bool {
	switch j.rec.State {
	case cloudmlv1.JobState_JOB_STATE_SUCCEEDED, cloudmlv1.JobState_JOB_STATE_FAILED, cloudmlv1.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

// activeAttempts counts attempts that hold a slot: a task is assigned,
// staging or running exactly while its current attempt is.
func (j *jobEntry) activeAttempts() int {
	return j.inState(cloudmlv1.TaskState_TASK_STATE_ASSIGNED, cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING)
}

// deriveState computes the job's state from its tasks.
func (j *jobEntry) deriveState() cloudmlv1.JobState {
	if j.rec.Cancelled {
		return cloudmlv1.JobState_JOB_STATE_CANCELLED
	}
	succeeded := j.inState(cloudmlv1.TaskState_TASK_STATE_SUCCEEDED)
	failed := j.inState(cloudmlv1.TaskState_TASK_STATE_FAILED, cloudmlv1.TaskState_TASK_STATE_CANCELLED)
	ended := succeeded + failed
	switch {
	case len(j.tasks) > 0 && succeeded == len(j.tasks):
		return cloudmlv1.JobState_JOB_STATE_SUCCEEDED
	case len(j.tasks) > 0 && ended == len(j.tasks) && failed > 0:
		return cloudmlv1.JobState_JOB_STATE_FAILED
	case !j.rec.StartTime.IsZero() || ended > 0:
		return cloudmlv1.JobState_JOB_STATE_RUNNING
	}
	return cloudmlv1.JobState_JOB_STATE_PENDING
}

// pendingReason is why pending task t waits: why, after its note.
func pendingReason(t *store.Task, why string) string {
	if t.Note != "" {
		return t.Note + "; " + why
	}
	return why
}

// changes collects the records an event modified, for one store commit.
type changes struct {
	nodes    map[string]*store.Node
	jobs     map[string]*store.Job
	tasks    map[attemptRef]*store.Task
	attempts map[attemptRef]*store.Attempt
	wake     map[string]bool // jobs whose subscribers to wake
}

func newChanges() *changes {
	return &changes{
		nodes:    map[string]*store.Node{},
		jobs:     map[string]*store.Job{},
		tasks:    map[attemptRef]*store.Task{},
		attempts: map[attemptRef]*store.Attempt{},
		wake:     map[string]bool{},
	}
}

func (c *changes) node(n *store.Node) { c.nodes[n.ID] = n }
func (c *changes) job(j *store.Job)   { c.jobs[j.ID] = j; c.wake[j.ID] = true }

// task records t, a task of j, and counts it in j's tally: every change
// of a task's state is recorded here.
func (c *changes) task(j *jobEntry, t *store.Task) {
	c.tasks[attemptRef{t.JobID, t.Index, 0}] = t
	c.wake[t.JobID] = true
	j.count(t)
}
func (c *changes) attempt(a *store.Attempt) {
	c.attempts[refOf(a)] = a
	c.wake[a.JobID] = true
}

// attemptChanged records a and returns c, for one-line commits.
func (c *changes) attemptChanged(a *store.Attempt) *changes {
	c.attempt(a)
	return c
}

// empty reports whether ch holds no record.
func (c *changes) empty() bool {
	return len(c.nodes)+len(c.jobs)+len(c.tasks)+len(c.attempts) == 0
}

func (c *changes) storeChanges() *store.Changes {
	sc := &store.Changes{}
	for _, n := range c.nodes {
		sc.Nodes = append(sc.Nodes, n)
	}
	for _, j := range c.jobs {
		sc.Jobs = append(sc.Jobs, j)
	}
	for _, t := range c.tasks {
		sc.Tasks = append(sc.Tasks, t)
	}
	for _, a := range c.attempts {
		sc.Attempts = append(sc.Attempts, a)
	}
	return sc // store.Write puts them in key order
}

// updateJobState re-derives j's state, records a change and the end time.
func (c *changes) updateJobState(j *jobEntry, now time.Time) {
	st := j.deriveState()
	if st == j.rec.State {
		return
	}
	j.rec.State = st
	if j.final() && j.rec.EndTime.IsZero() {
		j.rec.EndTime = now
	}
	c.job(j.rec)
}

// taskProto renders a task with its current attempt a (nil before the
// first).
func taskProto(t *store.Task, a *store.Attempt) *cloudmlv1.Task {
	pt := &cloudmlv1.Task{
		Index:   t.Index,
		Params:  t.Params,
		State:   t.State,
		Attempt: t.Attempt,
		Reason:  t.Reason,
	}
	if a != nil {
		pt.NodeId = a.NodeID
		pt.ExitCode = a.ExitCode
		pt.Metrics = a.Metrics
		pt.ResultsUrl = a.ResultsURL
		pt.StartTime = timestamp(a.StartTime)
		pt.EndTime = timestamp(a.EndTime)
	}
	return pt
}

// jobView is what jobProto renders, copied under c.mu so that rendering
// a large sweep, the costly part, runs without it (GetJob). Records are
// changed in place under c.mu, so the view holds copies; their maps
// (params, metrics) are replaced, never changed, and are shared.
type jobView struct {
	pj    *cloudmlv1.Job // everything but the tasks
	tasks []store.Task
	cur   []store.Attempt // the current attempt of each task; Attempt 0 when none
	next  int             // the index the next page starts from; 0 when none is left
}

// taskPage selects the tasks a view holds: those in states (every one
// when empty), from index start on, at most size (every one when 0).
type taskPage struct {
	states map[cloudmlv1.TaskState]bool
	start  int
	size   int
}

// fits is at most how many tasks of j the page selects, from the tally.
func (p *taskPage) fits(j *jobEntry) int {
	n := max(len(j.tasks)-p.start, 0)
	if len(p.states) > 0 {
		in := 0
		for st := range p.states {
			if int(st) >= 0 && int(st) < len(j.tally) {
				in += j.tally[st]
			}
		}
		n = min(n, in)
	}
	if p.size > 0 {
		n = min(n, p.size)
	}
	return n
}

// allTasks selects every task.
var allTasks = &taskPage{}

// view copies j for jobProto. With withTasks it copies every task too.
// Callers hold c.mu.
func (j *jobEntry) view(withTasks bool) *jobView {
	if !withTasks {
		return j.viewPage(nil)
	}
	return j.viewPage(allTasks)
}

// viewPage copies j and the tasks page selects (none when page is nil),
// and sets next to the index the next page starts from, 0 when no
// selected task is left. Callers hold c.mu.
func (j *jobEntry) viewPage(page *taskPage) *jobView {
	j.tallied()
	pj := &cloudmlv1.Job{
		Id:         j.rec.ID,
		Spec:       proto.Clone(j.spec).(*cloudmlv1.JobSpec),
		State:      j.rec.State,
		TaskCount:  j.rec.TaskCount,
		TaskStates: map[string]int32{},
		CreateTime: timestamp(j.rec.CreateTime),
		EndTime:    timestamp(j.rec.EndTime),
		Output:     j.rec.Output,
		Owner:      j.rec.Owner,
	}
	for st, n := range j.tally {
		if n > 0 {
			pj.TaskStates[taskStateName(cloudmlv1.TaskState(st))] = int32(n)
		}
	}
	v := &jobView{pj: pj}
	if page == nil {
		return v
	}
	pj.Stages = stagesProto(j)
	// Sized up front: GetJob of a 10,000-task job copied these slices
	// through every doubling, under c.mu (0.4 s of the coordinator's CPU in
	// an N=1000 control-plane run, a GetJob every 250 ms).
	n := page.fits(j)
	v.tasks = make([]store.Task, 0, n)
	v.cur = make([]store.Attempt, 0, n)
	for i := page.start; i < len(j.tasks); i++ {
		t := j.tasks[i]
		if len(page.states) > 0 && !page.states[t.State] {
			continue
		}
		if page.size > 0 && len(v.tasks) == page.size {
			v.next = i
			break
		}
		v.tasks = append(v.tasks, *t)
		if t.State == cloudmlv1.TaskState_TASK_STATE_PENDING && j.waiting != "" && t.Index >= j.waitingFrom {
			v.tasks[len(v.tasks)-1].Reason = pendingReason(t, j.waiting)
		}
		var cur store.Attempt
		if a := j.current(t.Index); a != nil {
			cur = *a
		}
		v.cur = append(v.cur, cur)
	}
	return v
}

// proto renders the view.
func (v *jobView) proto() *cloudmlv1.Job {
	if v.tasks == nil {
		return v.pj
	}
	v.pj.Tasks = make([]*cloudmlv1.Task, len(v.tasks))
	for i := range v.tasks {
		var a *store.Attempt
		if v.cur[i].Attempt > 0 {
			a = &v.cur[i]
		}
		v.pj.Tasks[i] = taskProto(&v.tasks[i], a)
	}
	return v.pj
}

// jobProto renders a job; withTasks adds every task. Callers hold c.mu.
func jobProto(j *jobEntry, withTasks bool) *cloudmlv1.Job {
	return j.view(withTasks).proto()
}

// redacted replaces the env values a caller may not see.
const redacted = "<redacted>"

// viewFor is a rendered job as caller may see it: the values of its env
// are its submitter's (and, for a job of no known submitter, an admin's)
// alone; everyone else sees the names only.
func viewFor(pj *cloudmlv1.Job, caller pki.Identity) *cloudmlv1.Job {
	if caller.Name == pj.GetOwner() && pj.GetOwner() != "" || pj.GetOwner() == "" && caller.Role == pki.RoleAdmin {
		return pj
	}
	for k := range pj.GetSpec().GetEnv() {
		pj.Spec.Env[k] = redacted
	}
	return pj
}

// stagesProto renders each node's staging of a container job, by node id.
func stagesProto(j *jobEntry) []*cloudmlv1.NodeStage {
	ids := make([]string, 0, len(j.staging))
	for id := range j.staging {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*cloudmlv1.NodeStage, 0, len(ids))
	for _, id := range ids {
		s := &cloudmlv1.NodeStage{NodeId: id, BytesDownloaded: j.stageBytes[id]}
		switch st := j.staging[id]; st {
		case stagePending:
			s.State = cloudmlv1.StageState_STAGE_STATE_STAGING
		case "":
			s.State = cloudmlv1.StageState_STAGE_STATE_STAGED
		default:
			s.State, s.Error = cloudmlv1.StageState_STAGE_STATE_FAILED, st
		}
		out = append(out, s)
	}
	return out
}

// nodeProto renders a node last heard from at seen; running counts its
// active attempts.
func nodeProto(n *nodeEntry, seen time.Time, running int32) *cloudmlv1.Node {
	return &cloudmlv1.Node{
		Id:            n.rec.ID,
		Hostname:      n.rec.Hostname,
		State:         n.rec.State,
		Address:       n.rec.Address,
		Slots:         n.rec.Slots,
		MemoryBytes:   n.rec.MemoryBytes,
		RunningTasks:  running,
		LastHeartbeat: timestamp(seen),
		Runtime:       n.rec.Runtime,
		SwarmNodeId:   n.rec.SwarmNodeID,
		SwarmRole:     n.rec.SwarmRole,
		Message:       n.rec.Message,
	}
}

// taskStateName is "pending" for TASK_STATE_PENDING.
func taskStateName(s cloudmlv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// sortedJobs returns jobs oldest first (FIFO order).
func sortedJobs(m map[string]*jobEntry) []*jobEntry {
	out := make([]*jobEntry, 0, len(m))
	for _, j := range m {
		out = append(out, j)
	}
	slices.SortFunc(out, compareJobs)
	return out
}

// compareJobs orders jobs by creation, then id.
func compareJobs(a, b *jobEntry) int {
	if c := a.rec.CreateTime.Compare(b.rec.CreateTime); c != 0 {
		return c
	}
	return strings.Compare(a.rec.ID, b.rec.ID)
}

// putJob adds j to jobs and to jobOrder in its place (a new job's is the
// end). Callers hold c.mu.
func (c *Coordinator) putJob(j *jobEntry) {
	c.jobs[j.rec.ID] = j
	i, _ := slices.BinarySearchFunc(c.jobOrder, j, compareJobs)
	c.jobOrder = slices.Insert(c.jobOrder, i, j)
}

// dropJob removes job id from jobs and jobOrder. Callers hold c.mu.
func (c *Coordinator) dropJob(id string) {
	j := c.jobs[id]
	if j == nil {
		return
	}
	delete(c.jobs, id)
	if i, found := slices.BinarySearchFunc(c.jobOrder, j, compareJobs); found {
		c.jobOrder = slices.Delete(c.jobOrder, i, i+1)
	}
}

// orderedJobs is jobOrder, which callers must not change. When checkKept
// is set (tests) it panics unless that is every job, oldest first.
// Callers hold c.mu.
func (c *Coordinator) orderedJobs() []*jobEntry {
	if checkKept {
		if want := sortedJobs(c.jobs); !slices.Equal(c.jobOrder, want) {
			panic(fmt.Sprintf("jobOrder holds %d jobs out of the %d kept, or out of order", len(c.jobOrder), len(want)))
		}
	}
	return c.jobOrder
}
