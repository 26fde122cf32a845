package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// ServerName is the name every CloudML client verifies the coordinator's
// certificate against, whatever address it dialled: the CA is private and
// pinned, so the name only has to be one the CA issued. The server
// certificate also names its listen and advertise addresses, for other TLS
// tools.
const ServerName = "cloudml-coordinator"

// ServerTLS is the coordinator's TLS configuration: TLS 1.3 only; a client
// certificate is requested but checked per call (Verify), so that Register
// (which carries a join token) and health need none, and every other call
// gets a precise UNAUTHENTICATED reason instead of a failed handshake. The
// handshake still proves the client holds the certificate's key. The
// server's chain includes the CA, so an agent holding only a token's
// fingerprint can check it.
func ServerTLS(cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert(), nil
		},
	}
}

// ClientTLS is the TLS configuration of an agent or client that knows the
// CA: TLS 1.3, the coordinator checked against the CA and ServerName, and
// cert (nil: none) presented as the client certificate. cert is called at
// each handshake, so a renewed certificate is used by the next connection.
func ClientTLS(caPool *x509.CertPool, cert func() *tls.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: caPool, ServerName: ServerName}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		}
	}
	return cfg
}

// ErrFingerprint: the coordinator's CA is not the one a join token pins.
var ErrFingerprint = errors.New("the coordinator's CA does not match the join token's fingerprint: this is not the coordinator that issued the token (or the token is from another cluster)")

// PinnedTLS is the TLS configuration of an agent that holds only a join
// token: the coordinator must present a chain whose CA certificate has the
// pinned SHA-256 fingerprint and whose leaf that CA signed for ServerName.
// Nothing is sent before that check passes. got receives the CA certificate
// once verified, so the agent can keep it.
func PinnedTLS(fingerprint string, got func(*x509.Certificate)) (*tls.Config, error) {
	want, err := hex.DecodeString(fingerprint)
	if err != nil || len(want) != 32 {
		return nil, fmt.Errorf("CA fingerprint %q is not a SHA-256 in hex", fingerprint)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the coordinator sent no certificate")
			}
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates[1:] {
				if fp, _ := hex.DecodeString(Fingerprint(c)); bytes.Equal(fp, want) {
					ca = c
				}
			}
			if ca == nil || !ca.IsCA {
				return ErrFingerprint
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: ServerName}); err != nil {
				return fmt.Errorf("the coordinator's certificate does not verify against the pinned CA: %w", err)
			}
			if got != nil {
				got(ca)
			}
			return nil
		},
	}, nil
}

// KeyPair joins a PEM certificate (and the chain after it) with its key.
func KeyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	return &c, nil
}
