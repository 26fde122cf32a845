package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/testutil"
)

const (
	testToken = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz0123456789ab-secretsecretsecretsecretse"
	managerID = "mgr0000000000000000000001"
	workerID  = "wrk0000000000000000000002"
)

var peers = []string{"10.0.0.0/24"}

// managerInfo is what a manager's Info says about its swarm.
func managerInfo() dswarm.Info {
	return dswarm.Info{
		NodeID: managerID, NodeAddr: "10.0.0.1", LocalNodeState: dswarm.LocalNodeStateActive, ControlAvailable: true,
		RemoteManagers: []dswarm.Peer{{NodeID: managerID, Addr: "10.0.0.1:2377"}},
		Cluster:        &dswarm.ClusterInfo{ID: "cluster1"},
	}
}

func workerInfo() dswarm.Info {
	return dswarm.Info{
		NodeID: workerID, NodeAddr: "10.0.0.2", LocalNodeState: dswarm.LocalNodeStateActive,
		RemoteManagers: []dswarm.Peer{{NodeID: managerID, Addr: "10.0.0.1:2377"}},
	}
}

func inspectFn(context.Context) (dswarm.Swarm, error) {
	return dswarm.Swarm{ClusterInfo: dswarm.ClusterInfo{ID: "cluster1"}, JoinTokens: dswarm.JoinTokens{Worker: testToken, Manager: "SWMTKN-1-x-manager"}}, nil
}

// setup returns a Manager over a stub daemon in state info and a firewall.
func setup(t *testing.T, info dswarm.Info, fwActive bool) (*Manager, *stubDocker, *swarmState, *fakeFirewall, *events) {
	t.Helper()
	ev := &events{}
	st := &swarmState{info: info}
	d := &stubDocker{ev: ev, InfoFn: st.Info, InspectFn: inspectFn}
	fw := &fakeFirewall{ev: ev, active: fwActive}
	return &Manager{Docker: d, Firewall: fw, Logger: testutil.Logger(t)}, d, st, fw, ev
}

func TestSwarmPorts(t *testing.T) {
	got := SwarmPorts(nil)
	want := []Rule{{2377, "tcp", ""}, {7946, "tcp", ""}, {7946, "udp", ""}, {4789, "udp", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SwarmPorts(nil) (-want +got):\n%s", diff)
	}
	got = SwarmPorts([]string{"10.0.0.0/24", "192.168.1.5/32"})
	if len(got) != 8 {
		t.Fatalf("got %d rules for 2 CIDRs, want 8: %v", len(got), got)
	}
	for i, r := range got {
		if wantFrom := []string{"10.0.0.0/24", "192.168.1.5/32"}[i/4]; r.From != wantFrom {
			t.Errorf("rule %d from %q, want %q", i, r.From, wantFrom)
		}
	}
}

func TestInitOpensPortsFirst(t *testing.T) {
	m, d, st, fw, ev := setup(t, dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive}, true)
	var got dswarm.InitRequest
	d.InitFn = func(_ context.Context, req dswarm.InitRequest) (string, error) {
		got = req
		st.set(managerInfo())
		return managerID, nil
	}
	mem, err := m.Init(t.Context(), "10.0.0.1", peers)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dswarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.1:2377"}, got); diff != "" {
		t.Errorf("init request (-want +got):\n%s", diff)
	}
	want := Membership{NodeID: managerID, ClusterID: "cluster1", Manager: true, ManagerAddr: "10.0.0.1:2377", WorkerToken: testToken}
	if diff := cmp.Diff(want, mem); diff != "" {
		t.Errorf("membership (-want +got):\n%s", diff)
	}
	wantEv := []string{"docker.info", "firewall.active", "firewall.allow", "docker.init", "docker.info", "docker.inspect"}
	if diff := cmp.Diff(wantEv, stateReadFirst(ev.get())); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(SwarmPorts(peers), fw.allowed); diff != "" {
		t.Errorf("allowed rules (-want +got):\n%s", diff)
	}
}

func TestInitInactiveFirewallLeftAlone(t *testing.T) {
	m, d, st, fw, ev := setup(t, dswarm.Info{}, false)
	d.InitFn = func(context.Context, dswarm.InitRequest) (string, error) {
		st.set(managerInfo())
		return managerID, nil
	}
	if _, err := m.Init(t.Context(), "10.0.0.1:2377", nil); err != nil {
		t.Fatal(err)
	}
	if len(fw.allowed) != 0 {
		t.Errorf("an inactive firewall got rules: %v", fw.allowed)
	}
	if slicesIndex(ev.get(), "firewall.active") > slicesIndex(ev.get(), "docker.init") {
		t.Errorf("firewall checked after init: %v", ev.get())
	}
}

func TestInitAlreadyManagerLeftAlone(t *testing.T) {
	m, _, _, _, ev := setup(t, managerInfo(), true)
	mem, err := m.Init(t.Context(), "10.0.0.1", peers)
	if err != nil {
		t.Fatal(err)
	}
	if mem.NodeID != managerID || !mem.Manager || mem.WorkerToken != testToken {
		t.Errorf("membership %+v, want the existing manager's", mem)
	}
	if slicesIndex(ev.get(), "docker.init") >= 0 {
		t.Errorf("init called on a node that already manages the swarm: %v", ev.get())
	}
}

func TestInitOtherSwarm(t *testing.T) {
	for name, info := range map[string]dswarm.Info{
		"worker":            workerInfo(),
		"manager_elsewhere": func() dswarm.Info { i := managerInfo(); i.NodeAddr = "172.16.0.9"; return i }(),
	} {
		t.Run(name, func(t *testing.T) {
			m, _, _, fw, ev := setup(t, info, true)
			_, err := m.Init(t.Context(), "10.0.0.1", peers)
			if !errors.Is(err, ErrOtherSwarm) {
				t.Fatalf("err = %v, want ErrOtherSwarm", err)
			}
			if !strings.Contains(err.Error(), "docker swarm leave --force") {
				t.Errorf("error %q does not say what to do", err)
			}
			if slicesIndex(ev.get(), "docker.init") >= 0 || len(fw.allowed) != 0 {
				t.Errorf("node in another swarm was touched: %v", ev.get())
			}
		})
	}
}

func TestJoinOpensPortsFirst(t *testing.T) {
	m, d, st, fw, ev := setup(t, dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive}, true)
	var got dswarm.JoinRequest
	d.JoinFn = func(_ context.Context, req dswarm.JoinRequest) error {
		got = req
		st.set(workerInfo())
		return nil
	}
	mem, err := m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "10.0.0.2", peers)
	if err != nil {
		t.Fatal(err)
	}
	want := dswarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.2", RemoteAddrs: []string{"10.0.0.1:2377"}, JoinToken: testToken}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("join request (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Membership{NodeID: workerID}, mem); diff != "" {
		t.Errorf("membership (-want +got):\n%s", diff)
	}
	wantEv := []string{"docker.info", "firewall.active", "firewall.allow", "docker.join", "docker.info"}
	if diff := cmp.Diff(wantEv, stateReadFirst(ev.get())); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
	if len(fw.allowed) != 4 {
		t.Errorf("allowed %v, want the 4 swarm ports from %v", fw.allowed, peers)
	}
}

func TestJoinAlreadyInSwarm(t *testing.T) {
	m, _, _, _, ev := setup(t, workerInfo(), false)
	mem, err := m.Join(t.Context(), []string{"10.0.0.1:2377"}, testToken, "10.0.0.2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if mem.NodeID != workerID || mem.Manager {
		t.Errorf("membership %+v, want the worker's", mem)
	}
	if slicesIndex(ev.get(), "docker.join") >= 0 {
		t.Errorf("join called on a node already in the swarm: %v", ev.get())
	}
}

func TestJoinManagerRecognisesItsCA(t *testing.T) {
	info := managerInfo()
	info.Cluster.TLSInfo.TrustRoot = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	info.RemoteManagers = []dswarm.Peer{{NodeID: managerID, Addr: "10.0.0.1:2377"}}
	token := "SWMTKN-1-" + caDigest(info.Cluster.TLSInfo.TrustRoot) + "-secret"
	m, _, _, _, ev := setup(t, info, false)
	// Reached through another address: only the CA digest matches.
	if _, err := m.Join(t.Context(), []string{"192.168.0.1"}, token, "", nil); err != nil {
		t.Fatal(err)
	}
	if slicesIndex(ev.get(), "docker.join") >= 0 {
		t.Errorf("join called on a manager of the same swarm: %v", ev.get())
	}
	if _, err := m.Join(t.Context(), []string{"192.168.0.1"}, testToken, "", nil); !errors.Is(err, ErrOtherSwarm) {
		t.Errorf("another CA: err = %v, want ErrOtherSwarm", err)
	}
}

func TestJoinOtherSwarm(t *testing.T) {
	m, _, _, _, ev := setup(t, workerInfo(), true)
	_, err := m.Join(t.Context(), []string{"10.9.9.9"}, testToken, "10.0.0.2", nil)
	if !errors.Is(err, ErrOtherSwarm) {
		t.Fatalf("err = %v, want ErrOtherSwarm", err)
	}
	for _, want := range []string{"10.0.0.1:2377", "10.9.9.9:2377", "docker swarm leave --force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if slicesIndex(ev.get(), "docker.join") >= 0 {
		t.Errorf("join called: %v", ev.get())
	}
}

func TestPendingNodeIsAnError(t *testing.T) {
	m, _, _, _, _ := setup(t, dswarm.Info{LocalNodeState: dswarm.LocalNodeStatePending, Error: "rpc error: timeout"}, false)
	_, err := m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "", nil)
	if !errors.Is(err, ErrSwarmState) || !strings.Contains(err.Error(), `"pending"`) {
		t.Errorf("join: err = %v, want ErrSwarmState naming the state", err)
	}
	if _, _, err := m.Current(t.Context()); !errors.Is(err, ErrSwarmState) {
		t.Errorf("current: err = %v, want ErrSwarmState", err)
	}
}

func TestJoinFailureIsClearAndAbandoned(t *testing.T) {
	m, d, st, _, ev := setup(t, dswarm.Info{}, false)
	d.JoinFn = func(context.Context, dswarm.JoinRequest) error {
		st.set(dswarm.Info{LocalNodeState: dswarm.LocalNodeStatePending})
		return errors.New("Timeout was reached before node joined")
	}
	d.LeaveFn = func(_ context.Context, force bool) error {
		if !force {
			t.Error("leave without force")
		}
		st.set(dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive})
		return nil
	}
	_, err := m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "10.0.0.2", nil)
	want := "join swarm at 10.0.0.1:2377: the manager did not answer within the daemon's join timeout: join abandoned (is 2377/tcp open on the manager and this node?)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if slicesIndex(ev.get(), "docker.leave") < 0 {
		t.Errorf("the pending join was not abandoned: %v", ev.get())
	}

	d.JoinFn = func(context.Context, dswarm.JoinRequest) error {
		return errors.New("rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster")
	}
	_, err = m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "10.0.0.2", nil)
	if err == nil || strings.Contains(err.Error(), "is 2377/tcp open") {
		t.Errorf("a refused token blamed on the firewall: %v", err)
	}
}

func TestJoinTimeout(t *testing.T) {
	m, d, _, _, _ := setup(t, dswarm.Info{}, false)
	m.JoinTimeout = 20 * time.Millisecond
	d.JoinFn = func(ctx context.Context, _ dswarm.JoinRequest) error {
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "", nil)
	if err == nil || !strings.Contains(err.Error(), "no answer within 20ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a bounded join that says it timed out", err)
	}
}

func TestTokensNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	for _, info := range []dswarm.Info{{}, managerInfo(), workerInfo()} {
		m, d, st, _, _ := setup(t, info, true)
		m.Logger = log
		d.InitFn = func(context.Context, dswarm.InitRequest) (string, error) {
			st.set(managerInfo())
			return managerID, nil
		}
		d.JoinFn = func(_ context.Context, req dswarm.JoinRequest) error {
			return errors.New("bad token " + req.JoinToken)
		}
		m.Init(t.Context(), "10.0.0.1", peers)
		_, err := m.Join(t.Context(), []string{"10.0.0.1"}, testToken, "", peers)
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("join error shows the token: %v", err)
		}
		m.Current(t.Context())
	}
	if buf.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	if strings.Contains(buf.String(), testToken) || strings.Contains(buf.String(), "secretsecret") {
		t.Errorf("the log shows a join token:\n%s", buf.String())
	}
}

func TestCurrent(t *testing.T) {
	for name, tc := range map[string]struct {
		info dswarm.Info
		ok   bool
		want Membership
	}{
		"none":    {info: dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive}},
		"worker":  {info: workerInfo(), ok: true, want: Membership{NodeID: workerID}},
		"manager": {info: managerInfo(), ok: true, want: Membership{NodeID: managerID, ClusterID: "cluster1", Manager: true, ManagerAddr: "10.0.0.1:2377", WorkerToken: testToken}},
	} {
		t.Run(name, func(t *testing.T) {
			m, _, _, _, _ := setup(t, tc.info, false)
			got, ok, err := m.Current(t.Context())
			if err != nil || ok != tc.ok {
				t.Fatalf("Current = _, %v, %v; want ok %v", ok, err, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("membership (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	m, d, _, _, _ := setup(t, dswarm.Info{}, false)
	if err := m.Healthy(t.Context()); err != nil {
		t.Errorf("healthy daemon: %v", err)
	}
	d.PingFn = func(context.Context) (types.Ping, error) { return types.Ping{}, errors.New("connection refused") }
	err := m.Healthy(t.Context())
	if want := "docker daemon at unix:///stub.sock: connection refused"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func slicesIndex(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// stateReadFirst orders the first two events, the swarm state and the
// firewall state, which readState reads at the same time, as docker.info
// then firewall.active.
func stateReadFirst(ev []string) []string {
	if len(ev) >= 2 && ev[0] == "firewall.active" && ev[1] == "docker.info" {
		ev[0], ev[1] = ev[1], ev[0]
	}
	return ev
}

// signalFirewall is a fakeFirewall that closes asked when Active is
// first called.
type signalFirewall struct {
	*fakeFirewall
	once  sync.Once
	asked chan struct{}
}

func (f *signalFirewall) Active(ctx context.Context) (bool, error) {
	f.once.Do(func() { close(f.asked) })
	return f.fakeFirewall.Active(ctx)
}

// TestStateAndFirewallReadTogether: Init and Join read the firewall's
// state while the daemon's info is still unanswered (here the daemon
// answers only once the firewall was asked), then open the ports and go
// on. Reading them one after the other, the info would never come.
func TestStateAndFirewallReadTogether(t *testing.T) {
	for _, op := range []string{"init", "join"} {
		t.Run(op, func(t *testing.T) {
			m, d, st, fake, _ := setup(t, dswarm.Info{}, true)
			fw := &signalFirewall{fakeFirewall: fake, asked: make(chan struct{})}
			m.Firewall = fw
			first := true
			d.InfoFn = func(ctx context.Context) (system.Info, error) {
				if first {
					first = false
					select {
					case <-fw.asked:
					case <-ctx.Done():
						return system.Info{}, fmt.Errorf("the firewall was not asked while the info was pending: %w", ctx.Err())
					}
				}
				return st.Info(ctx)
			}
			d.InitFn = func(context.Context, dswarm.InitRequest) (string, error) {
				st.set(managerInfo())
				return managerID, nil
			}
			d.JoinFn = func(context.Context, dswarm.JoinRequest) error {
				st.set(workerInfo())
				return nil
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var err error
			if op == "init" {
				_, err = m.Init(ctx, "10.0.0.1", nil)
			} else {
				_, err = m.Join(ctx, []string{"10.0.0.1"}, testToken, "10.0.0.2", nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(fake.allowed) != 4 {
				t.Errorf("allowed %v, want the 4 swarm ports", fake.allowed)
			}
		})
	}
}

// TestInitWaitsForAnInitUnderWay: a node whose bootstrap started a swarm
// init is pending when its agent is asked to found the swarm; Init waits
// for it to settle and returns the swarm it made, with no second init.
func TestInitWaitsForAnInitUnderWay(t *testing.T) {
	m, d, st, _, ev := setup(t, dswarm.Info{LocalNodeState: dswarm.LocalNodeStatePending}, false)
	reads := 0
	d.InfoFn = func(ctx context.Context) (system.Info, error) {
		if reads++; reads == 3 {
			st.set(managerInfo())
		}
		return st.Info(ctx)
	}
	mem, err := m.Init(t.Context(), "10.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if mem.NodeID != managerID || !mem.Manager || mem.ClusterID == "" {
		t.Errorf("membership = %+v, want the swarm the init made", mem)
	}
	if slicesIndex(ev.get(), "docker.init") >= 0 {
		t.Errorf("a second init was made: %v", ev.get())
	}
}

// TestInitGivesUpOnAStuckPendingNode: a node pending past PendingWait is
// an error naming the state, and no init is tried over it.
func TestInitGivesUpOnAStuckPendingNode(t *testing.T) {
	m, _, _, _, ev := setup(t, dswarm.Info{LocalNodeState: dswarm.LocalNodeStatePending, Error: "rpc error: timeout"}, false)
	m.PendingWait = 200 * time.Millisecond
	_, err := m.Init(t.Context(), "10.0.0.1", nil)
	if !errors.Is(err, ErrSwarmState) || !strings.Contains(err.Error(), `"pending"`) {
		t.Errorf("err = %v, want ErrSwarmState naming the state", err)
	}
	if slicesIndex(ev.get(), "docker.init") >= 0 {
		t.Errorf("init called on a pending node: %v", ev.get())
	}
}
