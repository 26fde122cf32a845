package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const (
	mCreating   = cloudmlv1.MachineState_MACHINE_STATE_CREATING
	mBooted     = cloudmlv1.MachineState_MACHINE_STATE_BOOTED
	mRegistered = cloudmlv1.MachineState_MACHINE_STATE_REGISTERED
	mReady      = cloudmlv1.MachineState_MACHINE_STATE_READY
	mDeleting   = cloudmlv1.MachineState_MACHINE_STATE_DELETING
	mGone       = cloudmlv1.MachineState_MACHINE_STATE_GONE
)

func machine(id string, st cloudmlv1.MachineState, msg string) *cloudmlv1.Machine {
	m := &cloudmlv1.Machine{Id: id, Pool: "default", Size: "s-1", State: st, Message: msg, PrivateIp: "10.0.0." + id[len(id)-1:]}
	if st == mRegistered || st == mReady {
		m.NodeId, m.Hostname, m.NodeState = "node-"+id[len(id)-1:], "host-"+id[len(id)-1:], cloudmlv1.NodeState_NODE_STATE_READY
	}
	price := 0.0357
	m.HourlyCost = &price
	return m
}

// machineScript serves ScalePool, DeleteMachines and CollectGarbage with
// fixed answers, and ListMachines with the next of its listings (the last
// one again once they run out).
type machineScript struct {
	fakeJobs
	cloudmlv1.UnimplementedClusterServiceServer

	mu       sync.Mutex
	lists    [][]*cloudmlv1.Machine
	scales   []*cloudmlv1.ScalePoolRequest
	scale    *cloudmlv1.ScalePoolResponse
	deletes  []*cloudmlv1.DeleteMachinesRequest
	gcDryRun []bool
	// blocking answers with an index (a coordinator with blocking
	// queries: the script changes on every read, so it never waits);
	// listReqs records the ListMachines requests.
	blocking bool
	listReqs []*cloudmlv1.ListMachinesRequest
}

func (s *machineScript) ScalePool(_ context.Context, req *cloudmlv1.ScalePoolRequest) (*cloudmlv1.ScalePoolResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scales = append(s.scales, req)
	if req.GetMaxHourlyCost() > 0 && req.GetMaxHourlyCost() < 0.1 {
		return nil, status.Error(codes.FailedPrecondition, "after this scale the cluster would cost $0.1071/h, over the limit of $0.0500/h")
	}
	if req.GetDryRun() {
		return &cloudmlv1.ScalePoolResponse{Pool: &cloudmlv1.PoolInfo{Name: "default", Nodes: req.GetNodes()}, Plan: &cloudmlv1.ScalePlan{
			Provider: "digitalocean", Create: req.GetNodes(), Size: "s-2vcpu-4gb", Region: "fra1", Image: "ubuntu-24-04-x64",
			UserData: "#cloud-config\nwrite_files:\n- path: /etc/cloudml/join-token\n  content: CMLTKN-<masked>\n", PriceKnown: true,
			HourlyCost: 0.0357, MonthlyCost: 24, ClusterHourlyCost: 0.1071, Notes: []string{"VPC default-fra1"}}}, nil
	}
	return s.scale, nil
}

func (s *machineScript) ListMachines(_ context.Context, req *cloudmlv1.ListMachinesRequest) (*cloudmlv1.ListMachinesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listReqs = append(s.listReqs, req)
	ms := s.lists[0]
	if len(s.lists) > 1 {
		s.lists = s.lists[1:]
	}
	out := &cloudmlv1.ListMachinesResponse{Provider: "digitalocean", PriceKnown: true, HourlyCost: 0.0714,
		Pools: []*cloudmlv1.PoolInfo{{Name: "default", Size: "s-1", Nodes: int32(len(ms))}}}
	for _, m := range ms {
		out.Machines = append(out.Machines, proto.Clone(m).(*cloudmlv1.Machine))
	}
	if s.blocking {
		out.Index = uint64(len(s.listReqs))
	}
	return out, nil
}

func (s *machineScript) DeleteMachines(_ context.Context, req *cloudmlv1.DeleteMachinesRequest) (*cloudmlv1.DeleteMachinesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes = append(s.deletes, req)
	return &cloudmlv1.DeleteMachinesResponse{Deleting: []*cloudmlv1.Machine{machine("m-1", mDeleting, "cluster down"), machine("m-2", mDeleting, "cluster down")}}, nil
}

func (s *machineScript) CollectGarbage(_ context.Context, req *cloudmlv1.CollectGarbageRequest) (*cloudmlv1.CollectGarbageResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcDryRun = append(s.gcDryRun, req.GetDryRun())
	resp := &cloudmlv1.CollectGarbageResponse{Strays: []*cloudmlv1.Machine{{Id: "555", Name: "old-1", Pool: "default", PrivateIp: "10.0.0.9"}}}
	if !req.GetDryRun() {
		resp.Deleted = []string{"555"}
	}
	return resp, nil
}

// upScript brings two machines up, one step at a time.
func upScript() *machineScript {
	return &machineScript{
		scale: &cloudmlv1.ScalePoolResponse{Pool: &cloudmlv1.PoolInfo{Name: "default", Nodes: 2},
			Created: []*cloudmlv1.Machine{machine("m-1", mCreating, ""), machine("m-2", mCreating, "")}},
		lists: [][]*cloudmlv1.Machine{
			{machine("m-1", mCreating, ""), machine("m-2", mCreating, "")}, // read by up to find the pool's machines
			{machine("m-1", mCreating, ""), machine("m-2", mCreating, "")},
			{machine("m-1", mBooted, "waiting for its agent to register (deadline 10m0s)"), machine("m-2", mCreating, "")},
			{machine("m-1", mRegistered, "joining the swarm"), machine("m-2", mBooted, "waiting for its agent to register (deadline 10m0s)")},
			{machine("m-1", mReady, ""), machine("m-2", mRegistered, "joining the swarm")},
			{machine("m-1", mReady, ""), machine("m-2", mReady, "")},
		},
	}
}

func TestClusterUpPrintsEachMachinesStepOffATerminal(t *testing.T) {
	srv := upScript()
	a, out, errb := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Millisecond
	code := a.Run(t.Context(), []string{"cluster", "up", "--nodes", "2", "--size", "s-2vcpu-4gb", "--region", "fra1", "--idle-delete", "30m"})
	if code != ExitOK {
		t.Fatalf("cluster up: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
	got := srv.scales[0]
	if got.GetNodes() != 2 || got.GetSize() != "s-2vcpu-4gb" || got.GetRegion() != "fra1" || got.GetIdleDelete().AsDuration() != 30*time.Minute || got.MinNodes != nil {
		t.Errorf("ScalePool request = %v", got)
	}
	for _, want := range []string{
		"machine m-1: creating\n", "machine m-1: booted: waiting for its agent to register", "machine m-1: registered as node-1 (host-1): joining the swarm\n",
		"machine m-1: ready as node-1 (host-1)\n", "machine m-2: ready as node-2 (host-2)\n", "pool default: 2 machines ready after",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr shows no %q:\n%s", want, errb)
		}
	}
	if strings.Count(errb.String(), "machine m-1: ") != 4 || strings.Contains(errb.String(), "\x1b") {
		t.Errorf("want one line per step of m-1 and no escapes:\n%s", errb)
	}
	for _, want := range []string{"MACHINE", "m-1", "ready", "node-1 (host-1)", "$0.0357", "the machines cost $0.0714 an hour"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout shows no %q:\n%s", want, out)
		}
	}
}

// TestClusterUpWaitsWithBlockingQueries: against a coordinator with
// blocking queries, each read after the first passes the last answer's
// index and lets the coordinator wait, at most the watch interval (five
// times less while machines join); up never sleeps between reads itself,
// so it ends with an hour's interval as soon as the machines are ready.
func TestClusterUpWaitsWithBlockingQueries(t *testing.T) {
	srv := upScript()
	srv.blocking = true
	a, out, errb := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Hour
	done := make(chan int, 1)
	go func() { done <- a.Run(t.Context(), []string{"cluster", "up", "--nodes", "2"}) }()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("cluster up: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errb)
		}
	case <-time.After(time.Minute):
		t.Fatal("cluster up slept between blocking queries")
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	// The first read finds the pool's machines, the next five watch them
	// through the script's listings, and the last prints the table.
	if len(srv.listReqs) != 7 {
		t.Fatalf("%d reads, want 7", len(srv.listReqs))
	}
	watch := srv.listReqs[1:6]
	if watch[0].GetWaitIndex() != 0 {
		t.Errorf("the watch's first read has wait_index %d, want 0", watch[0].GetWaitIndex())
	}
	for i, r := range watch[1:] {
		want := time.Hour
		if i == 3 { // after the listing with m-1 ready and m-2 joining the swarm
			want = time.Hour / 5
		}
		if r.GetWaitIndex() != uint64(i+2) || r.GetWaitMax().AsDuration() != want {
			t.Errorf("read %d: wait_index %d, wait_max %v; want %d and %v", i+1, r.GetWaitIndex(), r.GetWaitMax().AsDuration(), i+2, want)
		}
	}
}

func TestClusterUpDrawsABarPerMachineOnATerminal(t *testing.T) {
	srv := upScript()
	term := openTerminal(t)
	a, out, _ := app(fakeServer(t, srv), nil)
	a.Stderr, a.WatchInterval = term.tty, time.Millisecond
	if code := a.Run(t.Context(), []string{"cluster", "up", "--nodes", "2"}); code != ExitOK {
		t.Fatalf("cluster up: exit %d\n%s", code, term.close())
	}
	shown := term.close()
	for _, want := range []string{"machine m-1 (default)", "machine m-2 (default)", "ready as node-1 (host-1)", "ready as node-2 (host-2)", "[====="} {
		if !strings.Contains(shown, want) {
			t.Errorf("terminal shows no %q:\n%q", want, shown)
		}
	}
	if !strings.Contains(out.String(), "m-2") {
		t.Errorf("no listing on stdout:\n%s", out)
	}
}

func TestClusterUpFailsWhenAMachineNeverRegisters(t *testing.T) {
	srv := upScript()
	srv.lists = [][]*cloudmlv1.Machine{
		{machine("m-1", mBooted, ""), machine("m-2", mReady, "")},
		{machine("m-1", mGone, "its agent did not register within 10m0s of its creation: no registration from it reached the coordinator"), machine("m-2", mReady, "")},
	}
	a, _, errb := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Millisecond
	code := a.Run(t.Context(), []string{"cluster", "up", "--nodes", "2"})
	if code != ExitError || !strings.Contains(errb.String(), "error: 1 machine failed: m-1 gone: its agent did not register") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 naming the machine and why", code, errb)
	}
}

func TestClusterUpGivesUpAfterItsTimeout(t *testing.T) {
	srv := upScript()
	srv.lists = [][]*cloudmlv1.Machine{{machine("m-1", mBooted, ""), machine("m-2", mReady, "")}}
	a, _, errb := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Millisecond
	code := a.Run(t.Context(), []string{"cluster", "up", "--nodes", "2", "--timeout", "50ms"})
	if code != ExitError || !strings.Contains(errb.String(), "1 machine not there after 50ms: m-1 (booted)") {
		t.Errorf("exit %d, stderr:\n%s", code, errb)
	}
}

func TestClusterUpDryRunShowsUserDataAndCost(t *testing.T) {
	srv := upScript()
	code, out, errs := runFake(t, srv, "cluster", "up", "--nodes", "3", "--dry-run")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"3 to create", "size s-2vcpu-4gb, region fra1", "$0.0357/h ($24/month) a machine", "cluster would cost $0.1071/h",
		"note: VPC default-fra1", "content: CMLTKN-<masked>"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run shows no %q:\n%s", want, out)
		}
	}
	if !srv.scales[0].GetDryRun() {
		t.Error("the request was not a dry run")
	}
	code, _, errs = runFake(t, srv, "cluster", "up", "--nodes", "3", "--max-hourly-cost", "0.05")
	if code != ExitError || !strings.Contains(errs, "over the limit of $0.0500/h") {
		t.Errorf("over the cost limit: exit %d, stderr %q", code, errs)
	}
}

func TestClusterDownWaitsUntilEveryMachineIsGone(t *testing.T) {
	srv := &machineScript{lists: [][]*cloudmlv1.Machine{
		{machine("m-1", mDeleting, "cluster down"), machine("m-2", mDeleting, "cluster down")},
		{machine("m-1", mGone, "cluster down"), machine("m-2", mDeleting, "cluster down")},
		{machine("m-1", mGone, "cluster down"), machine("m-2", mGone, "cluster down")},
	}}
	a, out, errb := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Millisecond
	if code := a.Run(t.Context(), []string{"cluster", "down"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !srv.deletes[0].GetAll() || out.String() != "2 machines deleted; the provider confirmed each gone\n" ||
		!strings.Contains(errb.String(), "machine m-2: gone: cluster down") {
		t.Errorf("down: request %v, stdout %q, stderr:\n%s", srv.deletes[0], out, errb)
	}
	srv.lists = [][]*cloudmlv1.Machine{{machine("m-1", mGone, ""), machine("m-2", mGone, "")}}
	a, out, _ = app(fakeServer(t, srv), nil)
	if code := a.Run(t.Context(), []string{"cluster", "down", "--pool", "big", "-o", "json"}); code != ExitOK {
		t.Fatalf("down -o json: exit %d", code)
	}
	var resp struct{ Machines []struct{ ID, State string } }
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil || len(resp.Machines) != 2 || resp.Machines[0].State != "MACHINE_STATE_GONE" {
		t.Errorf("down -o json = %s (%v)", out, err)
	}
	if srv.deletes[1].GetAll() || srv.deletes[1].GetPool() != "big" {
		t.Errorf("down --pool big asked %v", srv.deletes[1])
	}
}

func TestClusterGCAndMachines(t *testing.T) {
	srv := upScript()
	code, out, _ := runFake(t, srv, "cluster", "gc", "--dry-run")
	if code != ExitOK || !strings.Contains(out, "555") || !strings.Contains(out, "1 machine the coordinator does not know") || !srv.gcDryRun[0] {
		t.Errorf("gc --dry-run: exit %d\n%s", code, out)
	}
	code, out, _ = runFake(t, srv, "cluster", "gc")
	if code != ExitOK || !strings.Contains(out, "yes") {
		t.Errorf("gc: exit %d\n%s", code, out)
	}
	code, out, _ = runFake(t, srv, "cluster", "machines", "-o", "wide")
	if code != ExitOK || !strings.Contains(out, "PUBLIC IP") || !strings.Contains(out, "pool default: 2 machines asked for, size s-1; idle machines kept") {
		t.Errorf("machines -o wide: exit %d\n%s", code, out)
	}
	code, out, _ = runFake(t, srv, "cluster", "machines", "-o", "json")
	if code != ExitOK || !strings.Contains(out, `"provider": "digitalocean"`) || !strings.Contains(out, `"state": "MACHINE_STATE_`) {
		t.Errorf("machines -o json: exit %d\n%s", code, out)
	}
	if code, _, errs := runFake(t, srv, "cluster", "up"); code != ExitUsage || !strings.Contains(errs, "up needs --nodes N") {
		t.Errorf("up without --nodes: exit %d, %q", code, errs)
	}
}
