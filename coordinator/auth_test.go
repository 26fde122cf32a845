package coordinator

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestRegisterRejectsWrongToken(t *testing.T) {
	h := start(t, "")
	client := cloudmlv1.NewAgentServiceClient(h.conn)
	_, err := client.Register(ctxT(t), &cloudmlv1.RegisterRequest{BootstrapToken: "wrong", Slots: 1})
	wantCode(t, err, codes.Unauthenticated)
	if !strings.Contains(err.Error(), "invalid bootstrap token") {
		t.Errorf("error %q does not say invalid bootstrap token", err)
	}
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 0 {
		t.Errorf("a rejected register created nodes: %v", nodes.GetNodes())
	}
}

func TestAgentCallsNeedACredential(t *testing.T) {
	h := start(t, "")
	good := newAgent(t, h, 1)
	if err := good.heartbeat(); err != nil {
		t.Fatalf("heartbeat with a valid credential: %v", err)
	}
	for _, tc := range []struct {
		name string
		cred string
	}{{"missing", ""}, {"unknown", "not-a-credential"}} {
		t.Run(tc.name, func(t *testing.T) {
			a := rejoin(t, h, "node-1", tc.cred)
			wantCode(t, a.heartbeat(), codes.Unauthenticated)
			ref := &cloudmlv1.TaskRef{JobId: "x", TaskIndex: 0, Attempt: 1}
			wantCode(t, a.report(ref, cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil), codes.Unauthenticated)
			_, err := a.publish(ref, &cloudmlv1.LogBatch{Seq: 1, Data: []byte("x\n")})
			wantCode(t, err, codes.Unauthenticated)
			stream, err := a.client.Session(ctxT(t), &cloudmlv1.SessionRequest{}, a.creds())
			if err == nil {
				_, err = stream.Recv()
			}
			wantCode(t, err, codes.Unauthenticated)
		})
	}
}

func TestSessionStartsWithNodeIDAndPeriod(t *testing.T) {
	h := start(t, "")
	a := newAgent(t, h, 2)
	a.open()
	if got := a.started.GetNodeId(); got != a.id {
		t.Errorf("started node id = %q, want %q", got, a.id)
	}
	if got := a.started.GetHeartbeatPeriod().AsDuration(); got != h.cfg.HeartbeatPeriod {
		t.Errorf("heartbeat period = %v, want %v", got, h.cfg.HeartbeatPeriod)
	}
	// A second session replaces the first.
	first, stopFirst := a.ended, a.stopSession
	defer stopFirst()
	a.open()
	select {
	case <-first:
	case <-ctxT(t).Done():
		t.Fatal("the old session did not end when a new one opened")
	}
}

func TestBootstrapTokenGeneratedOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, func(c *Config) { c.BootstrapToken = "" })
	tok := h.c.Token()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Fatalf("generated token %q is not 32 random bytes in hex", tok)
	}
	st, err := os.Stat(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", st.Mode().Perm())
	}
	h.stop()
	h2 := start(t, dir, func(c *Config) { c.BootstrapToken = "" })
	if h2.c.Token() != tok {
		t.Errorf("restarted coordinator token = %q, want the saved %q", h2.c.Token(), tok)
	}
}

func TestSecondCoordinatorOnLockedStateFailsFast(t *testing.T) {
	h := start(t, "")
	cfg := h.cfg
	_, err := New(cfg)
	if err == nil {
		t.Fatal("a second coordinator opened a locked state")
	}
	if !strings.Contains(err.Error(), "state is locked by another coordinator") {
		t.Errorf("error %q does not say the state is locked", err)
	}
}
