package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// File names of the CA in its directory.
const (
	// CACertFile is the CA certificate (public).
	CACertFile = "ca.crt"
	// CAKeyFile is the CA private key, mode 0600.
	CAKeyFile = "ca.key"
)

// caLifetime is how long a new CA is valid. Rotating it is a documented
// manual step (README, "Security").
const caLifetime = 10 * 365 * 24 * time.Hour

// clockSkew backdates every certificate so that peers whose clocks lag a
// little accept it at once.
const clockSkew = 5 * time.Minute

// CA is the coordinator's certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// CertPEM is Cert in PEM, as clients and agents keep it.
	CertPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool
}

// LoadOrCreateCA loads the CA kept in dir, or creates one there (key 0600)
// when there is none. created says which happened.
func LoadOrCreateCA(dir, commonName string) (ca *CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("load the CA in %s: %w", dir, err)
		}
		return ca, false, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, false, fmt.Errorf("read %s: %w", certPath, certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, false, fmt.Errorf("read %s: %w", keyPath, keyErr)
	default:
		return nil, false, fmt.Errorf("the CA in %s is incomplete (one of %s and %s is missing): restore it, or move both away to make a new CA (every node and client credential must then be issued again)", dir, CACertFile, CAKeyFile)
	}
	ca, certPEM, keyPEM, err = newCA(commonName)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	// The key first: a certificate without its key is the state to refuse.
	if err := atomicfile.WriteBytes(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, fmt.Errorf("save the CA key: %w", err)
	}
	if err := atomicfile.WriteBytes(certPath, certPEM, 0o644); err != nil {
		return nil, false, fmt.Errorf("save the CA certificate: %w", err)
	}
	return ca, true, nil
}

func newCA(commonName string) (*CA, []byte, []byte, error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"CloudML"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create the CA certificate: %w", err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ca, err := parseCA(certPEM, keyPEM)
	return ca, certPEM, keyPEM, err
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the CA certificate is not a CA")
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("the CA key does not match the CA certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, CertPEM: certPEM, key: key, pool: pool}, nil
}

// Fingerprint is the SHA-256 of the CA certificate, in hex: what join tokens
// pin.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Pool is a pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Issued is a certificate the CA signed.
type Issued struct {
	// CertPEM is the certificate in PEM.
	CertPEM []byte
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// Serial is the certificate's serial number in hex, which revocation names.
	Serial string
}

// SignCSR issues a certificate for role and name to the key of a PEM or DER
// certificate signing request. Only the CSR's key is used: the name, role
// and lifetime are the CA's decision.
func (ca *CA) SignCSR(csr []byte, role Role, name string, ttl time.Duration) (*Issued, error) {
	req, err := ParseCSR(csr)
	if err != nil {
		return nil, err
	}
	return ca.issue(req.PublicKey, role, name, ttl, nil)
}

// IssueServer issues the coordinator's server certificate for hosts (IP
// addresses or DNS names) and ServerName, to key.
func (ca *CA) IssueServer(key crypto.Signer, hosts []string, ttl time.Duration) (*Issued, error) {
	return ca.issue(key.Public(), RoleCoordinator, ServerName, ttl, hosts)
}

func (ca *CA) issue(pub crypto.PublicKey, role Role, name string, ttl time.Duration, hosts []string) (*Issued, error) {
	if err := role.valid(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("a certificate needs a name")
	}
	if ttl <= 0 {
		return nil, errors.New("a certificate needs a positive lifetime")
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{string(role)}, Organization: []string{"CloudML"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if role == RoleCoordinator {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{ServerName}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" && h != ServerName {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign a %s certificate: %w", role, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Cert:    cert,
		Serial:  SerialOf(cert),
	}, nil
}

// SerialOf is a certificate's serial number in hex.
func SerialOf(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// newSerial is a random 128-bit serial number.
func newSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	b[0] &= 0x7f        // positive
	return new(big.Int).SetBytes(b)
}

// NewKey generates a P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate a key: %w", err)
	}
	return key, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
