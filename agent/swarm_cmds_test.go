package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/agent/swarm"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestLinkSwarmDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "swarm")
	work1, work2 := t.TempDir(), t.TempDir()
	for _, work := range []string{work1, work1, work2} {
		if err := linkSwarmDir(root, "node1", work); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(filepath.Join(root, "node1")); err != nil || got != work {
			t.Errorf("link = %q, %v; want %q", got, err, work)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Errorf("swarm root holds %d entries, want the link only", len(entries))
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if err := linkSwarmDir(root, bad, work1); err == nil {
			t.Errorf("node id %q accepted", bad)
		}
	}
}

func TestMembershipReport(t *testing.T) {
	got := membershipReport(swarm.Membership{NodeID: "n1", ClusterID: "c1", Manager: true, ManagerAddr: "10.0.0.1:2377", WorkerToken: "tok"})
	want := &cloudmlv1.ReportSwarmRequest{SwarmNodeId: "n1", ClusterId: "c1", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER, ManagerAddr: "10.0.0.1:2377", WorkerJoinToken: "tok"}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("manager report (-want +got):\n%s", diff)
	}
	got = membershipReport(swarm.Membership{NodeID: "n2", WorkerToken: "ignored"})
	want = &cloudmlv1.ReportSwarmRequest{SwarmNodeId: "n2", Role: cloudmlv1.SwarmRole_SWARM_ROLE_WORKER}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("worker report (-want +got):\n%s", diff)
	}
}

// swarmReports records ReportSwarm calls; other calls are not expected.
type swarmReports struct {
	cloudmlv1.AgentServiceClient
	mu   sync.Mutex // protects reqs
	reqs []*cloudmlv1.ReportSwarmRequest
}

func (r *swarmReports) ReportSwarm(_ context.Context, req *cloudmlv1.ReportSwarmRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportSwarmResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return &cloudmlv1.ReportSwarmResponse{}, nil
}

func TestSwarmCommandsWithoutDaemon(t *testing.T) {
	for name, docker := range map[string]string{"none": "", "down": "unix://" + filepath.Join(t.TempDir(), "no.sock")} {
		t.Run(name, func(t *testing.T) {
			a, err := New(Config{CoordinatorAddr: "passthrough:///x", WorkDir: t.TempDir(), Docker: docker, Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			a.startDocker(t.Context())
			defer a.stopDocker()
			rt := a.runtimeError(t.Context())
			if name == "none" && rt != "" {
				t.Errorf("runtime error %q for an agent without Docker", rt)
			}
			if name == "down" && !strings.HasPrefix(rt, "docker daemon at "+docker+": ") {
				t.Errorf("runtime error %q does not name the daemon", rt)
			}
			rep := &swarmReports{}
			a.swarmInit(t.Context(), rep, &cloudmlv1.SwarmInit{AdvertiseAddr: "10.0.0.1"})
			a.swarmJoin(t.Context(), rep, &cloudmlv1.SwarmJoin{ManagerAddrs: []string{"10.0.0.1"}, JoinToken: "SWMTKN-1-a-b"})
			if len(rep.reqs) != 2 {
				t.Fatalf("got %d reports, want 2", len(rep.reqs))
			}
			for _, r := range rep.reqs {
				if r.GetError() == "" || r.GetSwarmNodeId() != "" {
					t.Errorf("report %v, want an error only", r)
				}
				if name == "none" && !strings.HasPrefix(r.GetError(), "no Docker daemon on this node: ") {
					t.Errorf("error %q does not say the node has no Docker", r.GetError())
				}
				if name == "down" && !strings.Contains(r.GetError(), docker) {
					t.Errorf("error %q does not name the daemon", r.GetError())
				}
			}
			if a.swarmNodeID() != "" {
				t.Errorf("swarm node id %q after failures", a.swarmNodeID())
			}
		})
	}
}
