// Package pulse answers node heartbeats in a process of its own.
//
// On a busy coordinator every goroutine that a network event wakes waits
// its turn on the Go runtime's run queue, behind the scheduler, the
// reports and the commits: at 1,000 nodes on 2 cores a heartbeat waited
// 100-200 ms there, with no lock involved. A heartbeat needs none of that
// state, so the coordinator can start this process beside it
// (coordinator --heartbeat-listen): it verifies the caller's node
// certificate against the coordinator's CA, answers at once with the
// period, and writes each beat, with when it arrived, to its standard
// output as a JSON line. The coordinator reads those lines and records
// the beats as its own (after checking the certificate is still the
// node's current one), so a node's deadline counts from the moment its
// heartbeat arrived here. A process of its own is also scheduled by the
// kernel as one: it is idle between beats, so it runs as soon as one
// arrives.
//
// The process holds no state of its own and writes nothing to disk; it
// ends when its standard input closes (the coordinator ended) or on
// SIGTERM. Agents fall back to heartbeating on their session's
// connection when it fails, so losing it costs nothing but the latency.
package pulse

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Files the process reads from the coordinator's PKI directory: the CA
// certificate (to verify nodes) and the server certificate and key (to
// serve with). It never reads the CA key.
const (
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Config is what the process serves.
type Config struct {
	// Listen is the address to listen on, host:port (port 0: any free one;
	// the first line of output names it).
	Listen string
	// PKIDir is the coordinator's PKI directory (pki.CACertFile,
	// ServerCertFile, ServerKeyFile).
	PKIDir string
	// Period is the heartbeat period each answer gives.
	Period time.Duration
	// Logger; default a null logger.
	Logger hclog.Logger
}

// DefaultConfig is a 2 s period on no address yet.
func DefaultConfig() Config { return Config{Period: 2 * time.Second} }

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return errors.New("pulse: no listen address")
	case c.PKIDir == "":
		return errors.New("pulse: no PKI directory")
	case c.Period <= 0:
		return fmt.Errorf("pulse: heartbeat period %s is not positive", c.Period)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("pulse: listen address %q: %w", c.Listen, err)
	}
	return nil
}

// Hello is the first line the process writes: where it listens.
type Hello struct {
	Addr string `json:"addr"`
}

// Beat is one heartbeat as the process received it, one JSON line each.
type Beat struct {
	// Node is the node certificate's name (the node id).
	Node string `json:"node"`
	// Serial is the certificate's serial, so the coordinator can refuse a
	// replaced or removed node's beats.
	Serial string `json:"serial"`
	// At is when the heartbeat arrived, in unix nanoseconds.
	At int64 `json:"at"`
	// RuntimeError is the request's runtime_error.
	RuntimeError string `json:"runtime_error,omitempty"`
}

// connBuffer is each connection's read and write buffer.
const connBuffer = 4 << 10

// Server answers heartbeats and writes beats to its output.
type Server struct {
	cloudmlv1.UnimplementedAgentServiceServer
	cfg      Config
	log      hclog.Logger
	verifier *pki.Verifier
	cert     *tls.Certificate

	beats chan Beat
}

// New loads the certificates of cfg.PKIDir.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	caPEM, err := os.ReadFile(filepath.Join(cfg.PKIDir, pki.CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pulse: the coordinator's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("pulse: %s holds no certificate", pki.CACertFile)
	}
	certPEM, err := os.ReadFile(filepath.Join(cfg.PKIDir, ServerCertFile))
	if err != nil {
		return nil, fmt.Errorf("pulse: the server certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(cfg.PKIDir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pulse: the server key: %w", err)
	}
	cert, err := pki.KeyPair(append(certPEM, caPEM...), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pulse: the server certificate: %w", err)
	}
	return &Server{cfg: cfg, log: cfg.Logger, verifier: pki.NewVerifier(pool), cert: cert, beats: make(chan Beat, 1024)}, nil
}

// Serve answers heartbeats on lis and writes Hello, then each beat, to
// out, until ctx ends or lis fails.
func (s *Server) Serve(ctx context.Context, lis net.Listener, out io.Writer) error {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	if err := enc.Encode(Hello{Addr: lis.Addr().String()}); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// A heartbeat is a few bytes each way: small buffers per connection
	// (gRPC's default is 32 KiB each way), for a thousand connections.
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(pki.ServerTLS(func() *tls.Certificate { return s.cert }))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ReadBufferSize(connBuffer),
		grpc.WriteBufferSize(connBuffer),
		grpc.MaxRecvMsgSize(64<<10),
	)
	cloudmlv1.RegisterAgentServiceServer(srv, s)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	written := make(chan error, 1)
	wctx, stopWriting := context.WithCancel(context.Background())
	go func() { written <- s.write(wctx, enc, w) }()
	s.log.Info("answering heartbeats", "addr", lis.Addr().String(), "period", s.cfg.Period)
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	case err = <-written:
		err = fmt.Errorf("pulse: write beats: %w", err)
	}
	srv.Stop()
	stopWriting()
	if err == nil || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// write writes beats to enc as they come, flushing when none is waiting.
func (s *Server) write(ctx context.Context, enc *json.Encoder, w *bufio.Writer) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-s.beats:
			if err := enc.Encode(b); err != nil {
				return err
			}
		}
		if len(s.beats) == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// Heartbeat answers a node's heartbeat with the period and passes the beat
// on. A call without a valid node certificate is refused.
func (s *Server) Heartbeat(ctx context.Context, req *cloudmlv1.HeartbeatRequest) (*cloudmlv1.HeartbeatResponse, error) {
	at := time.Now()
	id, err := s.identify(ctx, at)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "pulse: "+err.Error())
	}
	select {
	case s.beats <- Beat{Node: id.Name, Serial: id.Serial, At: at.UnixNano(), RuntimeError: req.GetRuntimeError()}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &cloudmlv1.HeartbeatResponse{Period: durationpb.New(s.cfg.Period)}, nil
}

// identify verifies the call's node certificate.
func (s *Server) identify(ctx context.Context, now time.Time) (pki.Identity, error) {
	id, err := s.verifier.Verify(pki.PeerCert(ctx), now)
	if err != nil {
		return pki.Identity{}, err
	}
	if id.Role != pki.RoleNode {
		return pki.Identity{}, fmt.Errorf("a %s certificate (%s) does not heartbeat; only nodes do", id.Role, id.Name)
	}
	return id, nil
}

// Main is the process: "coordinator pulse" with args (--listen, --pki,
// --heartbeat, --log-level). It serves until ctx ends or stdin closes.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("coordinator pulse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", "", "address to answer heartbeats on")
	fs.StringVar(&cfg.PKIDir, "pki", "", "the coordinator's PKI directory")
	fs.DurationVar(&cfg.Period, "heartbeat", cfg.Period, "heartbeat period to answer with")
	level := fs.String("log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "coordinator.pulse", Level: hclog.LevelFromString(*level), Output: stderr})
	s, err := New(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("pulse: listen on %s: %w", cfg.Listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The coordinator holds the other end: when it ends, so does this.
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	return s.Serve(ctx, lis, stdout)
}
