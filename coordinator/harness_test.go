package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) {
	checkKept = true
	goleak.VerifyTestMain(m)
}

// harness is a Coordinator served over bufconn.
type harness struct {
	t        *testing.T
	stateDir string
	cfg      Config
	c        *Coordinator
	lis      *bufconn.Listener
	conn     *grpc.ClientConn
	jobs     cloudmlv1.JobServiceClient
	cluster  cloudmlv1.ClusterServiceClient
	cancel   context.CancelFunc
	served   chan error
	stopped  bool
}

// start serves a new coordinator on stateDir ("" means a fresh temp dir).
func start(t *testing.T, stateDir string, opts ...func(*Config)) *harness {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	cfg := DefaultConfig()
	cfg.StateDir = stateDir
	cfg.DefaultBucket = "file:///tmp/cloudml-test-bucket"
	cfg.AdminConfig = filepath.Join(stateDir, "admin.config")
	cfg.HeartbeatPeriod = time.Second
	cfg.NodeDownAfter = time.Minute
	cfg.Logger = testutil.Logger(t)
	cfg.Version = "test"
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &harness{t: t, stateDir: stateDir, cfg: cfg, c: c, lis: bufconn.Listen(1 << 20), served: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.served <- c.Serve(ctx, h.lis) }()
	waitFor(t, "the admin credential", func() bool {
		_, err := os.Stat(cfg.AdminConfig)
		return err == nil
	})
	h.conn = h.dial()
	h.jobs = cloudmlv1.NewJobServiceClient(h.conn)
	h.cluster = cloudmlv1.NewClusterServiceClient(h.conn)
	t.Cleanup(h.stop)
	return h
}

// dial connects as the admin, with the credential the coordinator wrote.
func (h *harness) dial() *grpc.ClientConn {
	h.t.Helper()
	cred, err := pki.LoadCredential(h.cfg.AdminConfig)
	if err != nil {
		h.t.Fatalf("admin credential: %v", err)
	}
	tlsCfg, err := cred.TLS()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.dialWith(credentials.NewTLS(tlsCfg))
}

// dialWith connects with the given transport credentials.
func (h *harness) dialWith(creds credentials.TransportCredentials) *grpc.ClientConn {
	h.t.Helper()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return h.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcopt.MaxMsgBytes), grpc.MaxCallSendMsgSize(grpcopt.MaxMsgBytes)),
	)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return conn
}

// caPool trusts the harness coordinator's CA.
func (h *harness) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.c.CACertPEM())
	return pool
}

// stop stops serving and closes the store; safe to call twice.
func (h *harness) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	if err := <-h.served; err != nil {
		h.t.Errorf("Serve: %v", err)
	}
	h.conn.Close()
	h.checkTallies()
	if err := h.c.Close(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got code %v (%v), want %v", got, err, want)
	}
}

// submit submits spec and returns the job.
func (h *harness) submit(spec *cloudmlv1.JobSpec) *cloudmlv1.Job {
	h.t.Helper()
	resp, err := h.jobs.SubmitJob(ctxT(h.t), &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		h.t.Fatalf("SubmitJob: %v", err)
	}
	return resp.GetJob()
}

func (h *harness) job(id string) *cloudmlv1.Job {
	h.t.Helper()
	resp, err := h.jobs.GetJob(ctxT(h.t), &cloudmlv1.GetJobRequest{JobId: id})
	if err != nil {
		h.t.Fatalf("GetJob: %v", err)
	}
	return resp.GetJob()
}

// waitJob waits until the job reaches state.
func (h *harness) waitJob(id string, state cloudmlv1.JobState) *cloudmlv1.Job {
	h.t.Helper()
	var j *cloudmlv1.Job
	waitFor(h.t, "job "+id+" "+state.String(), func() bool {
		j = h.job(id)
		return j.GetState() == state
	})
	return j
}

// gridSpec is a job of n tasks sweeping x over 0..n-1.
// jobIDs lists the jobs, newest first (ListJobs).
func (h *harness) jobIDs() []string {
	h.t.Helper()
	list, err := h.jobs.ListJobs(ctxT(h.t), &cloudmlv1.ListJobsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, j := range list.GetJobs() {
		ids = append(ids, j.GetId())
	}
	return ids
}

func gridSpec(name string, n int) *cloudmlv1.JobSpec {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = string(rune('0' + i%10))
		if i >= 10 {
			vals[i] = string(rune('a'+i/10)) + vals[i]
		}
	}
	return &cloudmlv1.JobSpec{
		Name:    name,
		Command: []string{"octave-cli", "train.m"},
		Code:    &cloudmlv1.Source{Url: "file:///tmp/code.tar.gz", Digest: "sha256:00"},
		Sweep:   &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"x": {Values: vals}}},
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// adminCreds are the admin credential's transport credentials.
func (h *harness) adminCreds(t *testing.T) credentials.TransportCredentials {
	t.Helper()
	cred, err := pki.LoadCredential(h.cfg.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := cred.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(tlsCfg)
}

// issueNodeCert signs a certificate for node id with the coordinator's CA
// directly, valid for ttl (for expired-certificate cases).
func (h *harness) issueNodeCert(t *testing.T, id string, ttl time.Duration) *tls.Certificate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := pki.NewCSR(key)
	issued, err := h.c.trust.ca.SignCSR(csr, pki.RoleNode, id, ttl)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	pair, err := pki.KeyPair(issued.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pair.Leaf = issued.Cert
	return pair
}

// newCredential issues a client (or admin) credential through the API, as
// 'cloudml-client credential create' does.
func (h *harness) newCredential(t *testing.T, name string, admin bool) *tls.Certificate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := pki.NewCSR(key)
	resp, err := h.cluster.CreateCredential(ctxT(t), &cloudmlv1.CreateCredentialRequest{Name: name, Admin: admin, Csr: csr})
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	pair, err := pki.KeyPair(resp.GetCertificate(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// waitTaskStates waits until the job's task counts by state are want.
func (h *harness) waitTaskStates(id string, want map[string]int32) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("job %s tasks %v", id, want), func() bool {
		return maps.Equal(h.job(id).GetTaskStates(), want)
	})
}

// checkTallies checks that each job's task tally, kept as tasks change,
// matches a count of its tasks.
func (h *harness) checkTallies() {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	for id, j := range h.c.jobs {
		want := make([]int, len(cloudmlv1.TaskState_name))
		for _, t := range j.tasks {
			want[t.State]++
		}
		j.tallied()
		if !slices.Equal(j.tally, want) {
			h.t.Errorf("job %s: task tally %v, counted %v", id, j.tally, want)
		}
	}
}
