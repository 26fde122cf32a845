package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// Credential is a client's credential file: where the coordinator is, the
// CA that vouches for it, and the client's certificate and key. One file,
// mode 0600, found by the client at --config, $CLOUDML_CONFIG or
// ~/.cloudml/config.
type Credential struct {
	// Coordinator is the coordinator's address, host:port.
	Coordinator string `yaml:"coordinator"`
	// Name is the credential's name (its certificate's common name).
	Name string `yaml:"name"`
	// Role is "admin" or "client".
	Role Role `yaml:"role"`
	// CA is the coordinator's CA certificate, PEM.
	CA string `yaml:"ca"`
	// Cert is the client certificate, PEM.
	Cert string `yaml:"cert"`
	// Key is the client's private key, PEM.
	Key string `yaml:"key"`
}

const credentialHeader = "# CloudML client credential: who you are to a coordinator. Keep it secret (mode 0600);\n" +
	"# revoke it with 'cloudml-client credential revoke NAME'.\n"

// ConfigEnv names the environment variable that points at a credential file.
const ConfigEnv = "CLOUDML_CONFIG"

// DefaultConfigPath is $CLOUDML_CONFIG, else ~/.cloudml/config.
func DefaultConfigPath() string {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cloudml", "config")
	}
	return filepath.Join(home, ".cloudml", "config")
}

// LoadCredential reads a credential file.
func LoadCredential(path string) (*Credential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Credential
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("credential file %s: %w", path, err)
	}
	if c.CA == "" || c.Cert == "" || c.Key == "" {
		return nil, fmt.Errorf("credential file %s: needs ca, cert and key", path)
	}
	return &c, nil
}

// Save writes the credential file atomically with mode 0600, creating its
// directory (0700).
func (c *Credential) Save(path string) error {
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, data, 0o600)
}

// Marshal is the credential file's content.
func (c *Credential) Marshal() ([]byte, error) {
	data, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte(credentialHeader), data...), nil
}

// TLS is the client TLS configuration the credential gives.
func (c *Credential) TLS() (*tls.Config, error) {
	pair, err := KeyPair([]byte(c.Cert), []byte(c.Key))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("credential: the CA is not a PEM certificate")
	}
	return ClientTLS(pool, func() *tls.Certificate { return pair }), nil
}

// CAFingerprint is the fingerprint of the credential's CA.
func (c *Credential) CAFingerprint() (string, error) {
	ca, err := ParseCert([]byte(c.CA))
	if err != nil {
		return "", err
	}
	return Fingerprint(ca), nil
}

// Expiry is when the credential's certificate expires.
func (c *Credential) Expiry() (time.Time, error) {
	cert, err := ParseCert([]byte(c.Cert))
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}
