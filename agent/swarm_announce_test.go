package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/cloudml/cloudml/agent/swarm"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// outsideSwarm is a daemon in no swarm (a fresh one); only Info and Ping
// are expected.
type outsideSwarm struct{ swarm.DockerAPI }

func (outsideSwarm) DaemonHost() string { return "unix:///fresh.sock" }
func (outsideSwarm) Ping(context.Context) (types.Ping, error) {
	return types.Ping{}, nil
}
func (outsideSwarm) Info(context.Context) (system.Info, error) {
	return system.Info{Swarm: dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive}}, nil
}

// TestAnnounceOutsideSwarm: a node whose daemon is in no swarm (replaced
// since the agent last saw it in one) says so, so the coordinator forms the
// swarm again; the agent forgets its old membership.
func TestAnnounceOutsideSwarm(t *testing.T) {
	a, err := New(Config{CoordinatorAddr: "passthrough:///x", WorkDir: t.TempDir(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a.sw.manager = &swarm.Manager{Docker: outsideSwarm{}}
	a.sw.member = swarm.Membership{NodeID: "old"}
	rep := &swarmReports{}
	a.announceSwarm(t.Context(), rep, false)
	if len(rep.reqs) != 1 || rep.reqs[0].GetSwarmNodeId() != "" || rep.reqs[0].GetError() != "" {
		t.Fatalf("reports %v, want one saying the node is in no swarm", rep.reqs)
	}
	if a.swarmNodeID() != "" {
		t.Errorf("swarm node id %q after the daemon reported none", a.swarmNodeID())
	}
	// Announced: only a daemon that answers again after a failure is
	// announced again.
	for _, c := range []struct {
		prev, now string
		want      bool
	}{{"", "", false}, {"connection refused", "", true}, {"", "connection refused", false}} {
		if got := a.reannounce(c.prev, c.now); got != c.want {
			t.Errorf("reannounce(%q, %q) = %v, want %v", c.prev, c.now, got, c.want)
		}
	}
	a.sw.announced = false // the daemon did not answer at the session's start
	if !a.reannounce("", "") {
		t.Errorf("a healthy daemon never announced is not announced")
	}
}

// slowInfoDaemon is a daemon in no swarm whose first Info call answers
// only when its context ends, as a busy daemon would late; it can found
// a swarm.
type slowInfoDaemon struct {
	swarm.DockerAPI
	entered chan struct{} // closed when the first Info call is under way

	mu      sync.Mutex // protects calls, founded
	calls   int
	founded bool
}

func (d *slowInfoDaemon) DaemonHost() string { return "unix:///slow.sock" }
func (d *slowInfoDaemon) Info(ctx context.Context) (system.Info, error) {
	d.mu.Lock()
	d.calls++
	first, founded := d.calls == 1, d.founded
	d.mu.Unlock()
	if first {
		close(d.entered)
		<-ctx.Done()
		return system.Info{}, ctx.Err()
	}
	if founded {
		return system.Info{Swarm: dswarm.Info{LocalNodeState: dswarm.LocalNodeStateActive, NodeID: "n1", NodeAddr: "10.0.0.1", ControlAvailable: true}}, nil
	}
	return system.Info{Swarm: dswarm.Info{LocalNodeState: dswarm.LocalNodeStateInactive}}, nil
}
func (d *slowInfoDaemon) SwarmInit(context.Context, dswarm.InitRequest) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.founded = true
	return "n1", nil
}
func (d *slowInfoDaemon) SwarmInspect(context.Context) (dswarm.Swarm, error) {
	return dswarm.Swarm{ClusterInfo: dswarm.ClusterInfo{ID: "c1"}, JoinTokens: dswarm.JoinTokens{Worker: "SWMTKN-1-w"}}, nil
}

// TestSwarmCommandSupersedesAnnouncement: the coordinator asks a new node
// to found the swarm as its session opens, while the agent announces its
// membership; the init does not wait behind the announcement's daemon
// read, whose report would say nothing the init's does not, and the next
// healthy heartbeat announces again.
func TestSwarmCommandSupersedesAnnouncement(t *testing.T) {
	a, err := New(Config{CoordinatorAddr: "passthrough:///x", WorkDir: t.TempDir(), SwarmRoot: t.TempDir(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	d := &slowInfoDaemon{entered: make(chan struct{})}
	a.sw.manager = &swarm.Manager{Docker: d}
	rep := &swarmReports{}
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		a.announceSwarm(t.Context(), rep, false)
	}()
	<-d.entered
	inited := make(chan struct{})
	go func() {
		defer close(inited)
		a.swarmInit(t.Context(), rep, &cloudmlv1.SwarmInit{AdvertiseAddr: "10.0.0.1"})
	}()
	select {
	case <-inited:
	case <-time.After(30 * time.Second): // the announcement's read never ends by itself
		t.Fatal("the init waited behind the announcement")
	}
	<-announced
	if len(rep.reqs) != 1 || rep.reqs[0].GetSwarmNodeId() != "n1" || rep.reqs[0].GetRole() != cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER {
		t.Fatalf("reports %v, want the init's alone", rep.reqs)
	}
	// The init's report announced the membership: neither a heartbeat nor
	// an announcement asked for before the init and run after it (its
	// goroutine late) says it again; a daemon that answers again after a
	// failure is read and announced.
	if a.reannounce("", "") {
		t.Error("a heartbeat announces the membership the init reported")
	}
	a.announceSwarm(t.Context(), rep, false)
	if len(rep.reqs) != 1 {
		t.Errorf("reports %v after a late announcement, want the init's alone", rep.reqs)
	}
	if !a.reannounce("connection refused", "") {
		t.Error("a daemon back after a failure is not announced")
	}
	a.announceSwarm(t.Context(), rep, true)
	if len(rep.reqs) != 2 || rep.reqs[1].GetSwarmNodeId() != "n1" {
		t.Errorf("reports %v, want the init's, then the announcement's of the same membership", rep.reqs)
	}
}

// TestFailedSwarmCommandLeavesTheMembershipToAnnounce: a command that
// fails reports its error, not the membership, so the next healthy
// heartbeat announces it.
func TestFailedSwarmCommandLeavesTheMembershipToAnnounce(t *testing.T) {
	a, err := New(Config{CoordinatorAddr: "passthrough:///x", WorkDir: t.TempDir(), SwarmRoot: t.TempDir(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a.sw.manager = &swarm.Manager{Docker: outsideSwarm{}}
	rep := &swarmReports{}
	a.swarmJoin(t.Context(), rep, &cloudmlv1.SwarmJoin{}) // no manager address: refused
	if len(rep.reqs) != 1 || rep.reqs[0].GetError() == "" {
		t.Fatalf("reports %v, want the join's error", rep.reqs)
	}
	if !a.reannounce("", "") {
		t.Error("the membership is not announced after a failed command")
	}
}
