package pki

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// verifiedMax bounds a Verifier's cache; it is cleared when full.
const verifiedMax = 4096

// Verifier verifies peer certificates against a CA pool (Verify) once
// each, remembering whom each names, so the calls of one connection cost
// one signature check; expiry is checked on every call.
type Verifier struct {
	pool *x509.CertPool

	mu       sync.RWMutex // protects verified; every call reads it
	verified map[[32]byte]Identity
}

// NewVerifier verifies against pool.
func NewVerifier(pool *x509.CertPool) *Verifier {
	return &Verifier{pool: pool, verified: map[[32]byte]Identity{}}
}

// Verify is Verify against the Verifier's pool, from its cache when cert
// was verified before.
func (v *Verifier) Verify(cert *x509.Certificate, now time.Time) (Identity, error) {
	if cert == nil {
		return Identity{}, ErrNoCertificate
	}
	key := sha256.Sum256(cert.Raw)
	v.mu.RLock()
	id, ok := v.verified[key]
	v.mu.RUnlock()
	if !ok {
		var err error
		if id, err = Verify(v.pool, cert, now); err != nil {
			return Identity{}, err
		}
		v.mu.Lock()
		if len(v.verified) >= verifiedMax {
			clear(v.verified)
		}
		v.verified[key] = id
		v.mu.Unlock()
	}
	if now.After(id.NotAfter) {
		return Identity{}, fmt.Errorf("%w (it expired at %s)", ErrExpired, id.NotAfter.UTC().Format(time.RFC3339))
	}
	return id, nil
}

// PeerCert is the client certificate of a gRPC call over TLS; nil when
// the caller presented none.
func PeerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	return info.State.PeerCertificates[0]
}
