package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Role is what a certificate's holder may do; the coordinator maps each RPC
// to the roles allowed to call it.
type Role string

// Roles.
const (
	// RoleNode is an agent: AgentService, for itself only.
	RoleNode Role = "node"
	// RoleClient submits and watches jobs: JobService and ClusterService.
	RoleClient Role = "client"
	// RoleAdmin is a client that may also manage join tokens, credentials
	// and nodes.
	RoleAdmin Role = "admin"
	// RoleCoordinator is the coordinator's own server certificate.
	RoleCoordinator Role = "coordinator"
)

func (r Role) valid() error {
	switch r {
	case RoleNode, RoleClient, RoleAdmin, RoleCoordinator:
		return nil
	}
	return fmt.Errorf("unknown role %q", r)
}

// Identity is who a verified peer certificate names.
type Identity struct {
	// Role is the certificate's role.
	Role Role
	// Name is the node id or the credential name.
	Name string
	// Serial is the certificate's serial number, in hex.
	Serial string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// Errors of Verify, so callers can say what to do.
var (
	// ErrNoCertificate: the peer presented none.
	ErrNoCertificate = errors.New("no client certificate")
	// ErrUnknownCA: the certificate was not issued by this coordinator's CA.
	ErrUnknownCA = errors.New("certificate not issued by this coordinator's CA")
	// ErrExpired: the certificate is not valid now.
	ErrExpired = errors.New("certificate expired or not yet valid")
)

// Verify checks that cert was issued by the CA in pool for client
// authentication and is valid at now, and returns whom it names.
func Verify(pool *x509.CertPool, cert *x509.Certificate, now time.Time) (Identity, error) {
	if cert == nil {
		return Identity{}, ErrNoCertificate
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return Identity{}, fmt.Errorf("%w (valid %s to %s)", ErrExpired, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	case err != nil:
		return Identity{}, fmt.Errorf("%w: %w", ErrUnknownCA, err)
	}
	id := Identity{Name: cert.Subject.CommonName, Serial: SerialOf(cert), NotAfter: cert.NotAfter}
	if len(cert.Subject.OrganizationalUnit) == 1 {
		id.Role = Role(cert.Subject.OrganizationalUnit[0])
	}
	if err := id.Role.valid(); err != nil || id.Role == RoleCoordinator || id.Name == "" {
		return Identity{}, fmt.Errorf("%w: the certificate names no valid role and holder", ErrUnknownCA)
	}
	return id, nil
}
