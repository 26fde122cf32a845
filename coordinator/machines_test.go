package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// cloud is a Fake that outlives the coordinators that drive it, as a
// cloud's machines do: Start binds it to the latest coordinator, Close
// leaves it running. Hooks run around each Create.
type cloud struct {
	*providertest.Fake

	mu            sync.Mutex // protects target, before, after
	target        provider.Target
	before, after func()
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	c := &cloud{Fake: providertest.NewFake("fake")}
	// The fake mints through whichever coordinator started last.
	if err := c.Fake.Start(t.Context(), provider.Target{MintToken: c.mint}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cloud) mint(label string, slots int) (string, error) {
	c.mu.Lock()
	t := c.target
	c.mu.Unlock()
	return t.MintToken(label, slots)
}

func (c *cloud) Start(_ context.Context, t provider.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.target = t
	return nil
}

func (c *cloud) Close() error { return nil }

func (c *cloud) hooks(before, after func()) {
	c.mu.Lock()
	c.before, c.after = before, after
	c.mu.Unlock()
}

func (c *cloud) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	c.mu.Lock()
	before, after := c.before, c.after
	c.mu.Unlock()
	if before != nil {
		before()
	}
	nodes, err := c.Fake.Create(ctx, req)
	if after != nil {
		after()
	}
	return nodes, err
}

func (c *cloud) Reconcile(ctx context.Context, req provider.ReconcileRequest) (provider.ReconcileReport, error) {
	return provider.ReconcileByList(ctx, c, req)
}

func (c *cloud) count(t *testing.T) int {
	t.Helper()
	nodes, err := c.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(nodes)
}

// startFleet serves a coordinator on stateDir ("" for a new one) whose
// provider p is started, as Run starts it. Its machine checks run only
// when poked (MachineCheckInterval is an hour), so tests call check with
// the time they want.
func startFleet(t *testing.T, stateDir string, p provider.Provider, opts ...func(*Config)) *harness {
	t.Helper()
	h := start(t, stateDir, append([]func(*Config){func(c *Config) {
		c.Provider = p
		c.MachineCheckInterval = time.Hour
		c.ReconcileInterval = time.Hour
	}}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	err := h.c.startProvider(ctx, provider.Target{Addr: "127.0.0.1:1", MintToken: h.c.providerToken}, &loops)
	if err != nil {
		cancel()
		t.Fatalf("start the provider: %v", err)
	}
	t.Cleanup(func() { cancel(); loops.Wait() })
	return h
}

func (h *harness) machines(all bool) *cloudmlv1.ListMachinesResponse {
	h.t.Helper()
	resp, err := h.cluster.ListMachines(ctxT(h.t), &cloudmlv1.ListMachinesRequest{IncludeGone: all})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func (h *harness) scale(req *cloudmlv1.ScalePoolRequest) *cloudmlv1.ScalePoolResponse {
	h.t.Helper()
	resp, err := h.cluster.ScalePool(ctxT(h.t), req)
	if err != nil {
		h.t.Fatalf("ScalePool %v: %v", req, err)
	}
	return resp
}

func machineStates(ms []*cloudmlv1.Machine) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		out[m.GetId()] = strings.TrimPrefix(m.GetState().String(), "MACHINE_STATE_")
	}
	return out
}

func TestScaleRecordsTheRequestBeforeCreating(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	var seen []int
	cl.hooks(func() {
		f, err := h.c.store.LoadFleet()
		if err != nil {
			t.Error(err)
			return
		}
		for _, r := range f.Requests {
			seen = append(seen, r.Count)
		}
	}, nil)
	resp := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2})
	if len(seen) != 1 || seen[0] != 2 {
		t.Errorf("requests in the store when the provider was asked: counts %v, want one request for 2", seen)
	}
	if len(resp.GetCreated()) != 2 || resp.GetPool().GetNodes() != 2 || resp.GetPool().GetName() != provider.DefaultPool {
		t.Errorf("ScalePool = %v, want 2 created in the default pool", resp)
	}
	f, _ := h.c.store.LoadFleet()
	if len(f.Requests) != 0 || len(f.Machines) != 2 || len(f.Pools) != 1 {
		t.Errorf("store after the create: %d requests, %d machines, %d pools; want 0, 2, 1", len(f.Requests), len(f.Machines), len(f.Pools))
	}
}

// The coordinator dies after the provider made the machines and before
// the store recorded them: the next one, on the same state, adopts them.
func TestCoordinatorKilledBetweenCreateAndStoreWriteLeavesNoUnknownMachine(t *testing.T) {
	dir := t.TempDir()
	cl := newCloud(t)
	h := startFleet(t, dir, cl)
	cl.hooks(nil, func() { h.c.store.Close() }) // killed: nothing more is written
	if _, err := h.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Nodes: 3}); err == nil {
		t.Fatal("ScalePool with the store gone after the create succeeded")
	}
	h.stop()
	cl.hooks(nil, nil)

	h2 := startFleet(t, dir, cl)
	strays, err := h2.c.machines.fleet.Strays(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ms := h2.machines(true).GetMachines()
	t.Logf("coordinator killed between the create call and the store write: %d machines made, %d unknown after the restart, %d recorded", cl.count(t), len(strays), len(ms))
	if len(strays) != 0 || len(ms) != 3 || cl.count(t) != 3 || cl.Creates() != 1 {
		t.Errorf("%d unknown, %d recorded, %d exist after %d creates; want 0, 3, 3 after 1", len(strays), len(ms), cl.count(t), cl.Creates())
	}
	if f, _ := h2.c.store.LoadFleet(); len(f.Requests) != 0 {
		t.Errorf("%d requests left in the store after the adoption, want 0", len(f.Requests))
	}
	if more := h2.scale(&cloudmlv1.ScalePoolRequest{Nodes: 3}); len(more.GetCreated()) != 0 {
		t.Errorf("scale to 3 after the adoption created %d more", len(more.GetCreated()))
	}
}

func TestLostCreateResponsesAreAdoptedNotDuplicated(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	const n = 100
	for i := range n {
		cl.LoseCreates(1)
		resp, err := h.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Nodes: int32(i + 1)})
		if err != nil || len(resp.GetCreated()) != 1 || resp.GetError() == "" {
			t.Fatalf("scale to %d with the response lost = %v, %v; want the one machine found, and the error", i+1, resp, err)
		}
	}
	dups := cl.count(t) - n
	t.Logf("%d lost create responses: %d machines for %d asked, %d duplicates", n, cl.count(t), n, dups)
	if dups != 0 || cl.Creates() != n || len(h.machines(false).GetMachines()) != n {
		t.Errorf("%d duplicates after %d creates, %d recorded; want 0 after %d, %d recorded", dups, cl.Creates(), len(h.machines(false).GetMachines()), n, n)
	}
}

func TestDownUnderInjectedDeleteFailuresEndsWithNoMachine(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 3})
	h.scale(&cloudmlv1.ScalePoolRequest{Pool: "big", Nodes: 2})
	const failures = 5
	cl.FailDeletes(failures)
	resp, err := h.cluster.DeleteMachines(ctxT(t), &cloudmlv1.DeleteMachinesRequest{All: true})
	if err != nil || len(resp.GetDeleting()) != 5 {
		t.Fatalf("DeleteMachines all = %v, %v; want 5 deleting", resp, err)
	}
	checks := 0
	waitFor(t, "every machine gone", func() bool {
		checks++
		h.c.machines.check(t.Context(), time.Now())
		for _, m := range h.machines(true).GetMachines() {
			if m.GetState() != cloudmlv1.MachineState_MACHINE_STATE_GONE {
				return false
			}
		}
		return true
	})
	t.Logf("cluster down under %d injected delete failures: %d machines left at the provider after %d checks", failures, cl.count(t), checks)
	if cl.count(t) != 0 {
		t.Errorf("%d machines left", cl.count(t))
	}
	list := h.machines(false)
	for _, p := range list.GetPools() {
		if p.GetNodes() != 0 {
			t.Errorf("pool %s asks for %d machines after the cluster went down, want 0", p.GetName(), p.GetNodes())
		}
	}
	if len(list.GetMachines()) != 0 {
		t.Errorf("the default listing shows machines deleted as asked: %v", machineStates(list.GetMachines()))
	}
}

func TestGarbageCollectionWithAnEmptyStateDeletesEveryMachine(t *testing.T) {
	cl := newCloud(t)
	for i := range 3 {
		cl.Add(provider.Node{ID: fmt.Sprintf("left-%d", i), Request: "lost-state", Pool: provider.DefaultPool})
	}
	h := startFleet(t, "", cl, func(c *Config) { c.KeepStrays = true })
	dry, err := h.cluster.CollectGarbage(ctxT(t), &cloudmlv1.CollectGarbageRequest{DryRun: true})
	if err != nil || len(dry.GetStrays()) != 3 || len(dry.GetDeleted()) != 0 || cl.count(t) != 3 {
		t.Fatalf("gc --dry-run = %v, %v with %d left; want 3 strays listed, none deleted", dry, err, cl.count(t))
	}
	resp, err := h.cluster.CollectGarbage(ctxT(t), &cloudmlv1.CollectGarbageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc with the state lost: %d strays found, %d deleted, %d left", len(resp.GetStrays()), len(resp.GetDeleted()), cl.count(t))
	if len(resp.GetDeleted()) != 3 || cl.count(t) != 0 {
		t.Errorf("gc = %v with %d left; want all 3 deleted", resp, cl.count(t))
	}
}

func TestMachineWhoseAgentNeverRegistersIsDeletedWithTheReason(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	made := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2}).GetCreated()
	good, bad := made[0].GetId(), made[1].GetId()
	agent := newAgentWithToken(t, h, cl.Token(good), 1)
	// The other's agent gets as far as a refusal: its request is invalid.
	_, _, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: cl.Token(bad), Csr: []byte("not a csr"), Hostname: bad})
	wantCode(t, err, codes.InvalidArgument)

	h.c.machines.check(t.Context(), time.Now())
	before := h.machines(false).GetMachines()
	if st := machineStates(before); st[good] != "READY" || st[bad] != "BOOTED" || !strings.Contains(before[1].GetMessage(), "refused") {
		t.Fatalf("machines before the deadline = %v (%q), want %s ready and %s booted, its refusal shown", st, before[1].GetMessage(), good, bad)
	}
	if before[0].GetNodeId() != agent.id || before[0].GetHostname() != "host" {
		t.Errorf("machine %s shows node %q (%q), want %s", good, before[0].GetNodeId(), before[0].GetHostname(), agent.id)
	}
	h.c.machines.check(t.Context(), time.Now().Add(h.c.cfg.RegisterDeadline+time.Second))
	waitFor(t, "the machine past its deadline to be deleted", func() bool {
		h.c.machines.check(t.Context(), time.Now())
		return cl.count(t) == 1
	})
	after := machineStates(h.machines(false).GetMachines())
	var msg string
	for _, m := range h.machines(false).GetMachines() {
		if m.GetId() == bad {
			msg = m.GetMessage()
		}
	}
	if after[good] != "READY" || after[bad] != "GONE" || !strings.Contains(msg, "did not register within 10m0s") || !strings.Contains(msg, "refused") {
		t.Errorf("machines after the deadline = %v, %s says %q; want it gone saying why", after, bad, msg)
	}
}

func TestRegistrationLinksItsMachineWithoutWaitingForACheck(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl) // checks an hour apart: only the registration can link
	id := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 1}).GetCreated()[0].GetId()
	agent := newAgentWithToken(t, h, cl.Token(id), 1)
	waitFor(t, "the machine to show its registered node", func() bool {
		ms := h.machines(false).GetMachines()
		return len(ms) == 1 && ms[0].GetNodeId() == agent.id && ms[0].GetState() == cloudmlv1.MachineState_MACHINE_STATE_READY
	})
}

// TestMachinesBlockingQuery: a listing with the last answer's index waits
// for the next change (a registration linking its machine) and answers at
// once with it; with nothing changing it answers after wait_max, index
// unchanged.
func TestMachinesBlockingQuery(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl) // checks an hour apart: only the registration changes the listing
	id := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 1}).GetCreated()[0].GetId()
	first := h.machines(true)
	if first.GetIndex() == 0 {
		t.Fatal("a listing without an index")
	}
	wait := func(index uint64, max time.Duration) (*cloudmlv1.ListMachinesResponse, time.Duration) {
		start := time.Now()
		resp, err := h.cluster.ListMachines(ctxT(t), &cloudmlv1.ListMachinesRequest{IncludeGone: true, WaitIndex: index, WaitMax: durationpb.New(max)})
		if err != nil {
			t.Fatal(err)
		}
		return resp, time.Since(start)
	}
	// The scale's own follow-up (a check) may still count a change: wait
	// until a whole 200ms passes without one.
	index := first.GetIndex()
	for quiet := false; !quiet; {
		resp, took := wait(index, 200*time.Millisecond)
		switch {
		case resp.GetIndex() == index && took < 200*time.Millisecond:
			t.Fatalf("with no change the query answered after %v, before its 200ms wait", took)
		case resp.GetIndex() == index:
			quiet = true
		case resp.GetIndex() < index:
			t.Fatalf("index went back from %d to %d", index, resp.GetIndex())
		}
		index = resp.GetIndex()
	}
	// An index this process never gave (one from before a restart) is
	// answered at once, not after the wait.
	if resp, took := wait(index+1000, time.Minute); resp.GetIndex() != index || took > 30*time.Second {
		t.Fatalf("a foreign index: index %d after %v, want %d at once", resp.GetIndex(), took, index)
	}
	got := make(chan *cloudmlv1.ListMachinesResponse, 1)
	go func() {
		resp, _ := wait(index, time.Minute)
		got <- resp
	}()
	agent := newAgentWithToken(t, h, cl.Token(id), 1)
	select {
	case resp := <-got:
		if resp.GetIndex() <= index {
			t.Errorf("index %d after a change, want more than %d", resp.GetIndex(), index)
		}
		waitFor(t, "the listing to show the node", func() bool {
			ms := h.machines(false).GetMachines()
			return len(ms) == 1 && ms[0].GetNodeId() == agent.id
		})
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking query did not answer the registration")
	}
}

func TestIdleMachinesAreDeletedDownToThePoolMinimum(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	one := int32(1)
	made := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 3, MinNodes: &one, IdleDelete: durationpb.New(time.Minute)}).GetCreated()
	var agents []*fakeAgent
	for _, m := range made {
		agents = append(agents, newAgentWithToken(t, h, cl.Token(m.GetId()), 1))
	}
	busy := agents[1]
	busy.open()
	h.submit(gridSpec("busy", 1))
	busy.next()
	agents[0].open()
	agents[2].open()
	now := time.Now()
	h.c.machines.check(t.Context(), now)
	h.c.machines.check(t.Context(), now.Add(2*time.Minute))
	waitFor(t, "the idle machines to be deleted", func() bool {
		h.c.machines.check(t.Context(), now.Add(2*time.Minute))
		return cl.count(t) == 1
	})
	left := h.machines(false).GetMachines()
	if len(left) != 1 || left[0].GetRunningTasks() != 1 {
		t.Errorf("machines left = %v, want the one running the task", left)
	}
}

func TestVanishedMachineTakesItsNodeDownAndItsTasksAreRescheduled(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	id := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 1}).GetCreated()[0].GetId()
	agent := newAgentWithToken(t, h, cl.Token(id), 1)
	agent.open()
	job := h.submit(gridSpec("lost", 1))
	as := agent.next()
	h.c.machines.check(t.Context(), time.Now())
	if err := cl.Delete(t.Context(), []string{id}); err != nil { // gone behind the coordinator's back
		t.Fatal(err)
	}
	if err := h.c.machines.reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	ms := h.machines(false).GetMachines()
	if len(ms) != 1 || ms[0].GetState() != cloudmlv1.MachineState_MACHINE_STATE_LOST || !strings.Contains(ms[0].GetMessage(), "vanished") {
		t.Errorf("machines after it vanished = %v, want it lost", ms)
	}
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := nodes.GetNodes()[0]; n.GetState() != cloudmlv1.NodeState_NODE_STATE_DOWN || !strings.Contains(n.GetMessage(), "vanished") {
		t.Errorf("node of the vanished machine = %v, want it down saying why", n)
	}
	task := h.job(job.GetId()).GetTasks()[0]
	if task.GetState() != cloudmlv1.TaskState_TASK_STATE_PENDING || task.GetAttempt() != as.GetRef().GetAttempt() || !strings.Contains(task.GetReason(), "rescheduling") {
		t.Errorf("task after its machine vanished = %v, want it pending again", task)
	}
}

func TestScaleDownDeletesIdleMachinesFirstAndRemovesTheirNodes(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", cl)
	made := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2}).GetCreated()
	a := newAgentWithToken(t, h, cl.Token(made[0].GetId()), 1)
	b := newAgentWithToken(t, h, cl.Token(made[1].GetId()), 1)
	a.open()
	h.submit(gridSpec("keep", 1))
	a.next()
	b.open()
	resp := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 1})
	if len(resp.GetDeleting()) != 1 || resp.GetDeleting()[0].GetId() != made[1].GetId() {
		t.Fatalf("scale down deletes %v, want the idle %s", resp.GetDeleting(), made[1].GetId())
	}
	nodes, _ := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	for _, n := range nodes.GetNodes() {
		if n.GetId() == b.id && (n.GetState() != cloudmlv1.NodeState_NODE_STATE_REMOVED || !strings.Contains(n.GetMessage(), "being deleted")) {
			t.Errorf("node of the machine being deleted = %v, want removed saying why", n)
		}
	}
	waitFor(t, "the machine deleted", func() bool {
		h.c.machines.check(t.Context(), time.Now())
		return cl.count(t) == 1
	})
}

// priced is a cloud that knows prices, regions and renders user-data.
type priced struct {
	*cloud
}

func (p priced) Price(_ context.Context, size string) (provider.Price, error) {
	switch size {
	case "", "small":
		return provider.Price{Size: "small", Hourly: 0.05, Monthly: 36}, nil
	case "big":
		return provider.Price{Size: "big", Hourly: 0.5, Monthly: 360}, nil
	}
	return provider.Price{}, fmt.Errorf("%w: size %q", provider.ErrInvalid, size)
}

func (p priced) PlanCreate(_ context.Context, req provider.CreateRequest) (provider.CreatePlan, error) {
	return provider.CreatePlan{Size: "small", Region: "fra1", Image: "ubuntu-24-04-x64",
		UserData: "#cloud-config\nwrite_files:\n- content: " + provider.MaskedToken + "\n"}, nil
}

func (p priced) Region() string { return "fra1" }

func TestScaleKeepsToTheCostLimitAndDryRunsCreateNothing(t *testing.T) {
	cl := newCloud(t)
	h := startFleet(t, "", priced{cl})
	dry := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 3, DryRun: true})
	plan := dry.GetPlan()
	if plan.GetCreate() != 3 || !plan.GetPriceKnown() || plan.GetClusterHourlyCost() < 0.149 || plan.GetClusterHourlyCost() > 0.151 ||
		!strings.Contains(plan.GetUserData(), provider.MaskedToken) || plan.GetRegion() != "fra1" || plan.GetImage() == "" {
		t.Errorf("dry run plan = %v, want 3 to create at $0.15/h, the user-data masked, in fra1", plan)
	}
	if cl.Creates() != 0 || len(h.machines(true).GetMachines()) != 0 {
		t.Errorf("a dry run created %d machines", cl.Creates())
	}
	h.c.trust.mu.RLock()
	tokens := len(h.c.trust.tokens)
	h.c.trust.mu.RUnlock()
	if tokens != 0 {
		t.Errorf("a dry run minted %d join tokens", tokens)
	}

	h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2, MaxHourlyCost: 0.11})
	_, err := h.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Pool: "gpu", Size: "big", Nodes: 1, MaxHourlyCost: 0.5})
	wantCode(t, err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "$0.6000/h") {
		t.Errorf("refusal = %v, want the cost it would reach", err)
	}
	_, err = h.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Pool: "gpu", Nodes: 1, Region: "nyc3"})
	wantCode(t, err, codes.FailedPrecondition)
	if resp := h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2, Region: "fra1"}); resp.GetPool().GetRegion() != "fra1" {
		t.Errorf("pool after a scale naming the provider's region = %v", resp.GetPool())
	}
	list := h.machines(false)
	if !list.GetPriceKnown() || list.GetHourlyCost() < 0.099 || list.GetHourlyCost() > 0.101 || list.GetMachines()[0].HourlyCost == nil || list.GetMachines()[0].GetRegion() != "fra1" {
		t.Errorf("listing = %v, want 2 machines in fra1 at $0.10/h", list)
	}
}

func TestScaleRefusals(t *testing.T) {
	h := startFleet(t, "", newCloud(t))
	for _, tc := range []struct {
		req  *cloudmlv1.ScalePoolRequest
		want codes.Code
	}{
		{&cloudmlv1.ScalePoolRequest{Nodes: -1}, codes.InvalidArgument},
		{&cloudmlv1.ScalePoolRequest{Pool: "Big", Nodes: 1}, codes.InvalidArgument},
		{&cloudmlv1.ScalePoolRequest{Nodes: 1, Region: "fra1"}, codes.InvalidArgument}, // a provider without regions
		{&cloudmlv1.ScalePoolRequest{Nodes: 1, MaxHourlyCost: 1}, codes.FailedPrecondition},
	} {
		_, err := h.cluster.ScalePool(ctxT(t), tc.req)
		if codeOf(err) != tc.want {
			t.Errorf("ScalePool %v = %v, want %v", tc.req, err, tc.want)
		}
	}
	h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 1, Size: "s1"})
	_, err := h.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Nodes: 2, Size: "s2"})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = h.cluster.DeleteMachines(ctxT(t), &cloudmlv1.DeleteMachinesRequest{Ids: []string{"nope"}})
	wantCode(t, err, codes.NotFound)

	none := startFleet(t, "", provider.None{})
	_, err = none.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Nodes: 1})
	wantCode(t, err, codes.FailedPrecondition)
	if resp, err := none.cluster.ScalePool(ctxT(t), &cloudmlv1.ScalePoolRequest{Nodes: 0}); err != nil || !proto.Equal(resp.GetPool(), &cloudmlv1.PoolInfo{Name: "default", IdleDelete: durationpb.New(0)}) {
		t.Errorf("scale to 0 with provider none = %v, %v", resp, err)
	}
}
