package mesh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mesh is an in-process coordinator with real agents, all over one bufconn
// and TLS, as on a real cluster.
type mesh struct {
	t      *testing.T
	coord  *inproc.Cluster
	jobs   cloudmlv1.JobServiceClient
	nodes  cloudmlv1.ClusterServiceClient
	bucket string
	state  string
}

// newMesh starts a coordinator whose state is in state; its bucket is
// beside it. A mesh started again on the same state finds it.
func newMesh(t *testing.T, state string) *mesh {
	t.Helper()
	m := &mesh{t: t, state: state}
	m.bucket = "file://" + filepath.Join(filepath.Dir(state), "bucket")
	c, err := inproc.Start(inproc.Config{Dir: filepath.Dir(state), Logger: testutil.Logger(t), Coordinator: func(cfg *coordinator.Config) {
		cfg.StateDir = state
		cfg.AdminConfig = filepath.Join(state, "admin.config")
		cfg.DefaultBucket = m.bucket
		cfg.HeartbeatPeriod = 200 * time.Millisecond
		cfg.NodeDownAfter = 30 * time.Second // no test here needs a silent node found; a loaded machine must not find one
	}})
	if err != nil {
		t.Fatal(err)
	}
	m.coord = c
	t.Cleanup(m.stop)
	conn, err := grpc.NewClient(inproc.Target, append(c.DialOptions(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m.jobs = cloudmlv1.NewJobServiceClient(conn)
	m.nodes = cloudmlv1.NewClusterServiceClient(conn)
	return m
}

// stop stops the agents, then the coordinator, and closes its store; safe
// to call twice.
func (m *mesh) stop() {
	if err := m.coord.Close(); err != nil {
		m.t.Errorf("mesh: %v", err)
	}
}

// startAgent runs a real agent with its own work directory and a fresh
// single-use join token.
func (m *mesh) startAgent(workDir string, slots int) {
	if err := m.coord.StartAgent(workDir, filepath.Base(workDir), slots); err != nil {
		m.t.Fatal(err)
	}
}

// waitNodes waits until n nodes are ready with their sessions open, so
// each can be given work at once.
func (m *mesh) waitNodes(n int) {
	m.t.Helper()
	waitFor(m.t, fmt.Sprintf("%d ready, connected nodes", n), func() bool {
		resp, err := m.nodes.ListNodes(context.Background(), &cloudmlv1.ListNodesRequest{})
		if err != nil {
			return false
		}
		ready := 0
		for _, nd := range resp.Nodes {
			if nd.State == cloudmlv1.NodeState_NODE_STATE_READY && nd.Connected {
				ready++
			}
		}
		return ready >= n
	})
}

// follow subscribes to a job's logs until it ends and returns its output
// per task and the final state.
func (m *mesh) follow(id string) (map[int32]string, cloudmlv1.JobState) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := m.jobs.SubscribeLogs(ctx, &cloudmlv1.SubscribeLogsRequest{JobId: id, Follow: true})
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[int32]string{}
	for {
		msg, err := s.Recv()
		if err != nil {
			m.t.Fatalf("logs of %s ended without a final state: %v", id, err)
		}
		out[msg.TaskIndex] += string(msg.Data)
		if msg.JobState != cloudmlv1.JobState_JOB_STATE_UNSPECIFIED {
			return out, msg.JobState
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// codeDir writes a script the tasks run.
func codeDir(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "task.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func contains(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("%q does not contain %q", s, sub)
		}
	}
	return nil
}
