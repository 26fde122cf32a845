package pulse_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/coordinator/pulse"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// childEnv makes the test binary run Main instead of the tests: Start's
// process in TestStartRunsTheProcess.
const childEnv = "CLOUDML_PULSE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := pulse.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// authority is a coordinator's PKI directory: its CA, and the server
// certificate and key the pulse serves with.
type authority struct {
	dir string
	ca  *pki.CA
}

func newAuthority(t *testing.T) authority {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := pki.LoadOrCreateCA(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.IssueServer(key, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{pulse.ServerCertFile: issued.CertPEM, pulse.ServerKeyFile: keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return authority{dir: dir, ca: ca}
}

// issue makes a certificate of role for name, and its Identity's serial.
func (a authority) issue(t *testing.T, role pki.Role, name string) (*tls.Certificate, string) {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		t.Fatal(err)
	}
	issued, err := a.ca.SignCSR(csr, role, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(issued.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, issued.Serial
}

// client dials addr trusting a's CA and presenting cert (nil: none).
func (a authority) client(t *testing.T, addr string, cert *tls.Certificate) cloudmlv1.AgentServiceClient {
	t.Helper()
	var get func() *tls.Certificate
	if cert != nil {
		get = func() *tls.Certificate { return cert }
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(a.ca.Pool(), get))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cloudmlv1.NewAgentServiceClient(cc)
}

// newServer is a Server of a's PKI directory answering with period, and
// a loopback listener for it.
func newServer(t *testing.T, a authority, period time.Duration) (*pulse.Server, net.Listener) {
	t.Helper()
	s, err := pulse.New(pulse.Config{Listen: "127.0.0.1:0", PKIDir: a.dir, Period: period})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, lis
}

// serve runs a Server in this process on a loopback port and returns its
// address and the lines it writes.
func serve(t *testing.T, a authority) (string, *bufio.Scanner) {
	t.Helper()
	s, lis := newServer(t, a, 3*time.Second)
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, w) }()
	lines := bufio.NewScanner(r)
	t.Cleanup(func() {
		cancel()
		r.Close()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "closed pipe") {
			t.Errorf("Serve: %v", err)
		}
	})
	var hello pulse.Hello
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &hello) != nil || hello.Addr != lis.Addr().String() {
		t.Fatalf("first line %q is not the Hello of %s", lines.Text(), lis.Addr())
	}
	return hello.Addr, lines
}

// TestNodeHeartbeatIsAnsweredAndPassedOn: a node's heartbeat gets the
// period, and its beat (node, certificate serial, arrival, runtime
// report) is written as a line.
func TestNodeHeartbeatIsAnsweredAndPassedOn(t *testing.T) {
	a := newAuthority(t)
	addr, lines := serve(t, a)
	cert, serial := a.issue(t, pki.RoleNode, "node-7")
	before := time.Now()
	resp, err := a.client(t, addr, cert).Heartbeat(context.Background(), &cloudmlv1.HeartbeatRequest{RuntimeError: "docker: gone"})
	after := time.Now()
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if got := resp.GetPeriod().AsDuration(); got != 3*time.Second {
		t.Errorf("period %s, want the configured 3s", got)
	}
	if !lines.Scan() {
		t.Fatalf("no beat written: %v", lines.Err())
	}
	var b pulse.Beat
	if err := json.Unmarshal(lines.Bytes(), &b); err != nil {
		t.Fatalf("beat line %q: %v", lines.Text(), err)
	}
	if b.Node != "node-7" || b.Serial != serial || b.RuntimeError != "docker: gone" {
		t.Errorf("beat %+v, want node-7 with serial %s and its runtime error", b, serial)
	}
	if at := time.Unix(0, b.At); at.Before(before) || at.After(after) {
		t.Errorf("beat arrived at %s, not within the call (%s to %s)", at, before, after)
	}
}

// TestOnlyNodesHeartbeat: no certificate, a client's, and a node's from
// another CA are each refused, and nothing is written for them.
func TestOnlyNodesHeartbeat(t *testing.T) {
	a := newAuthority(t)
	addr, lines := serve(t, a)
	clientCert, _ := a.issue(t, pki.RoleClient, "alice")
	other := newAuthority(t)
	strangerCert, _ := other.issue(t, pki.RoleNode, "node-1")
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "a client's": clientCert, "another CA's node": strangerCert} {
		_, err := a.client(t, addr, cert).Heartbeat(context.Background(), &cloudmlv1.HeartbeatRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: got %v, want Unauthenticated", name, err)
		}
	}
	// A node's beat after them is the first line written.
	cert, _ := a.issue(t, pki.RoleNode, "node-2")
	if _, err := a.client(t, addr, cert).Heartbeat(context.Background(), &cloudmlv1.HeartbeatRequest{}); err != nil {
		t.Fatal(err)
	}
	lines.Scan()
	if !strings.Contains(lines.Text(), `"node":"node-2"`) {
		t.Errorf("first beat written %q, want node-2's alone", lines.Text())
	}
}

// TestStartRunsTheProcess starts the process (this test binary running
// Main), heartbeats to it, gets the beat back, and stops it; a process
// that cannot serve makes Start fail with its reason.
func TestStartRunsTheProcess(t *testing.T) {
	t.Setenv(childEnv, "1")
	a := newAuthority(t)
	beats := make(chan pulse.Beat, 1)
	cfg := pulse.Config{Listen: "127.0.0.1:0", PKIDir: a.dir, Period: time.Second}
	p, err := pulse.Start([]string{os.Args[0]}, cfg, os.Stderr, func(b pulse.Beat) { beats <- b })
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p.Port() == 0 || !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Errorf("process listens on %q", p.Addr())
	}
	cert, serial := a.issue(t, pki.RoleNode, "node-3")
	if _, err := a.client(t, p.Addr(), cert).Heartbeat(context.Background(), &cloudmlv1.HeartbeatRequest{}); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	select {
	case b := <-beats:
		if b.Node != "node-3" || b.Serial != serial {
			t.Errorf("beat %+v, want node-3's", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no beat from the process")
	}
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process ended")
	}
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "ended") {
		t.Errorf("Err after Stop = %v, want that the process ended", err)
	}

	cfg.PKIDir = t.TempDir() // no CA there
	if _, err := pulse.Start([]string{os.Args[0]}, cfg, io.Discard, func(pulse.Beat) {}); err == nil ||
		!strings.Contains(err.Error(), "failed to start") || !strings.Contains(err.Error(), "the coordinator's CA") {
		t.Errorf("Start without a CA: got %v, want it to fail saying why", err)
	}
}

// TestStartRefusesAProcessThatNamesNoAddress: a command whose first line
// is not a Hello with an address is stopped, and Start says why.
func TestStartRefusesAProcessThatNamesNoAddress(t *testing.T) {
	cfg := pulse.Config{Listen: "127.0.0.1:0", PKIDir: t.TempDir(), Period: time.Second}
	for script, want := range map[string]string{
		"echo '{}'; cat >/dev/null":        "named no address",
		"echo 'listening'; cat >/dev/null": "invalid character",
		"exit 0":                           "EOF",
	} {
		// Start's flags follow the script as $0, $1, ...
		_, err := pulse.Start([]string{"sh", "-c", script}, cfg, io.Discard, func(pulse.Beat) {})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", script, err, want)
		}
	}
}

// TestServeEndsWhenItsOutputFails: when the beats can no longer be
// written (the coordinator is gone), Serve ends with that error.
func TestServeEndsWhenItsOutputFails(t *testing.T) {
	a := newAuthority(t)
	s, lis := newServer(t, a, time.Second)
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), lis, w) }()
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil { // the Hello
		t.Fatal(err)
	}
	r.Close()
	cert, _ := a.issue(t, pki.RoleNode, "node-4")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.client(t, lis.Addr().String(), cert).Heartbeat(ctx, &cloudmlv1.HeartbeatRequest{})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "write beats") {
			t.Errorf("Serve: got %v, want a write error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not end when its output failed")
	}
}

// TestConfigValidate names what is missing.
func TestConfigValidate(t *testing.T) {
	ok := pulse.Config{Listen: ":0", PKIDir: "/x", Period: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	def := pulse.DefaultConfig()
	def.Listen, def.PKIDir = ":0", "/x"
	if err := def.Validate(); err != nil {
		t.Errorf("the default config with an address and a directory: %v", err)
	}
	for want, c := range map[string]pulse.Config{
		"no listen address": {PKIDir: "/x", Period: time.Second},
		"no PKI directory":  {Listen: ":0", Period: time.Second},
		"is not positive":   {Listen: ":0", PKIDir: "/x"},
		"missing port":      {Listen: "localhost", PKIDir: "/x", Period: time.Second},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: got %v, want %q", c, err, want)
		}
	}
}
