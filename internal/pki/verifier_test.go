package pki_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
)

// TestVerifierChecksOnceAndExpiryAlways: a certificate of the pool's CA
// names its holder (again from the cache), is refused once it expired,
// and one of another CA, or none, is refused with the reason.
func TestVerifierChecksOnceAndExpiryAlways(t *testing.T) {
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), "other CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA) *pki.Issued {
		_, csr, err := pki.NewKeyRequest()
		if err != nil {
			t.Fatal(err)
		}
		issued, err := ca.SignCSR(csr, pki.RoleNode, "node-1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return issued
	}
	v := pki.NewVerifier(ca.Pool())
	mine, now := issue(ca), time.Now()
	for range 2 { // the second from the cache
		id, err := v.Verify(mine.Cert, now)
		if err != nil || id.Name != "node-1" || id.Role != pki.RoleNode || id.Serial != mine.Serial {
			t.Fatalf("Verify = %+v, %v; want node-1's identity", id, err)
		}
	}
	if _, err := v.Verify(mine.Cert, now.Add(2*time.Hour)); !errors.Is(err, pki.ErrExpired) {
		t.Errorf("a cached certificate past its expiry: %v, want ErrExpired", err)
	}
	if _, err := v.Verify(issue(other).Cert, now); !errors.Is(err, pki.ErrUnknownCA) {
		t.Errorf("another CA's certificate: %v, want ErrUnknownCA", err)
	}
	if _, err := v.Verify(nil, now); !errors.Is(err, pki.ErrNoCertificate) {
		t.Errorf("no certificate: %v, want ErrNoCertificate", err)
	}
	if pki.PeerCert(context.Background()) != nil {
		t.Error("PeerCert of a context without a peer is not nil")
	}
}
