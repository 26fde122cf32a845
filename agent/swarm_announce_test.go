package agent

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/cloudml/cloudml/agent/swarm"
	"github.com/cloudml/cloudml/internal/testutil"
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
	a.announceSwarm(t.Context(), rep)
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
