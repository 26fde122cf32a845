package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// PKI is a test certificate authority: fake coordinators serve TLS with
// it, as the real one does, so every test connection is TLS 1.3 too.
type PKI struct {
	t  testing.TB
	CA *pki.CA
}

// NewPKI makes a CA in a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{t: t, CA: ca}
}

// ServerTLS is a coordinator's TLS configuration: a server certificate
// for pki.ServerName with the CA in its chain.
func (p *PKI) ServerTLS() *tls.Config {
	p.t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		p.t.Fatal(err)
	}
	issued, err := p.CA.IssueServer(key, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	pair, err := pki.KeyPair(append(issued.CertPEM, p.CA.CertPEM...), keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return pki.ServerTLS(func() *tls.Certificate { return pair })
}

// Pair issues a client certificate for role and name, valid for ttl.
func (p *PKI) Pair(role pki.Role, name string, ttl time.Duration) *tls.Certificate {
	p.t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		p.t.Fatal(err)
	}
	csr, err := pki.NewCSR(key)
	if err != nil {
		p.t.Fatal(err)
	}
	issued, err := p.CA.SignCSR(csr, role, name, ttl)
	if err != nil {
		p.t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	pair, err := pki.KeyPair(issued.CertPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair
}

// ClientCreds are client transport credentials that trust the CA and
// present pair (nil: no certificate).
func (p *PKI) ClientCreds(pair *tls.Certificate) credentials.TransportCredentials {
	var get func() *tls.Certificate
	if pair != nil {
		get = func() *tls.Certificate { return pair }
	}
	return credentials.NewTLS(pki.ClientTLS(p.CA.Pool(), get))
}

// Token is a join token that pins the CA (its id and secret are random:
// fake coordinators accept any).
func (p *PKI) Token() string { return pki.NewToken(p.CA.Fingerprint()).String() }

// Sign signs a CSR for a fake coordinator's Register or renewal.
func (p *PKI) Sign(csr []byte, role pki.Role, name string, ttl time.Duration) []byte {
	p.t.Helper()
	issued, err := p.CA.SignCSR(csr, role, name, ttl)
	if err != nil {
		p.t.Fatal(err)
	}
	return issued.CertPEM
}

// PeerName returns the common name of a call's client certificate, "" if
// it has none (fake coordinators identify nodes by it).
func PeerName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].Subject.CommonName
}

// PeerCert returns a call's client certificate, or nil.
func PeerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
		return info.State.PeerCertificates[0]
	}
	return nil
}

// Server is a gRPC server on an in-memory listener, serving TLS with its
// own PKI until the test ends.
type Server struct {
	// PKI is the server's CA.
	PKI *PKI
	// Dialer reaches the listener; add transport credentials to it.
	Dialer grpc.DialOption
}

// ServeTLS serves the services register adds over TLS on an in-memory
// listener until the test ends.
func ServeTLS(t testing.TB, register func(*grpc.Server)) *Server {
	t.Helper()
	p := NewPKI(t)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.ServerTLS())))
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return &Server{PKI: p, Dialer: grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })}
}

// RegisterNode registers a node as an agent does, with a new key and a
// CSR on a connection without a client certificate, and returns its id
// and certificate. A refusal is returned, not fatal.
func RegisterNode(t testing.TB, conn grpc.ClientConnInterface, req *cloudmlv1.RegisterRequest) (string, *tls.Certificate, error) {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		t.Fatal(err)
	}
	if req.Csr == nil {
		req.Csr = csr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cloudmlv1.NewAgentServiceClient(conn).Register(ctx, req)
	if err != nil {
		return "", nil, err
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetNodeId(), pair, nil
}
