package coordinator

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/atomicfile"
	"github.com/cloudml/cloudml/internal/pki"
)

// Trust: the coordinator is its own CA (kept in StateDir/pki), serves TLS
// 1.3 only, and knows every caller from its peer certificate. The
// authority is the part of the coordinator that decides who a caller is.
// It has its own lock, never held across a disk write, so authenticating
// a call never waits behind job state or the store.

// PKIDirName is the directory of the CA and the server certificate in the
// state directory.
const PKIDirName = "pki"

// Server certificate files in PKIDirName.
const (
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// serverCertTTL is the server certificate's lifetime; it is reissued at
// start when less than serverCertRenew of it is left.
const (
	serverCertTTL   = 365 * 24 * time.Hour
	serverCertRenew = 30 * 24 * time.Hour
)

// authority holds the CA, the join tokens and the credentials, and checks
// the identity of every call.
type authority struct {
	ca     *pki.CA
	log    hclog.Logger
	dir    string
	server atomic.Pointer[tls.Certificate]
	// verifier checks peer certificates against the CA, once each.
	verifier *pki.Verifier

	// registerMu serialises the changes to tokens, credentials and node
	// certificates (each a store commit), so a single-use token is used
	// once; authentication never takes it.
	registerMu sync.Mutex

	mu     sync.RWMutex // protects the maps below
	tokens map[string]*store.JoinToken
	creds  map[string]*store.Credential
	nodes  map[string]nodeCert // node id → its accepted certificates
}

// nodeCert is what the authority knows of a node's certificates.
type nodeCert struct {
	serial, prev string
	removed      bool
}

func newAuthority(dir string, log hclog.Logger) (*authority, error) {
	ca, created, err := pki.LoadOrCreateCA(dir, "CloudML coordinator CA")
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the coordinator's CA", "dir", dir, "fingerprint", ca.Fingerprint())
	}
	return &authority{
		ca: ca, log: log, dir: dir, verifier: pki.NewVerifier(ca.Pool()),
		tokens: map[string]*store.JoinToken{},
		creds:  map[string]*store.Credential{},
		nodes:  map[string]nodeCert{},
	}, nil
}

// load fills the authority from the stored records.
func (au *authority) load(snap *store.Snapshot) {
	au.mu.Lock()
	defer au.mu.Unlock()
	au.tokens, au.creds, au.nodes = map[string]*store.JoinToken{}, map[string]*store.Credential{}, map[string]nodeCert{}
	for _, t := range snap.Tokens {
		au.tokens[t.ID] = t
	}
	for _, c := range snap.Credentials {
		au.creds[c.Name] = c
	}
	for _, n := range snap.Nodes {
		au.nodes[n.ID] = nodeCert{serial: n.CertSerial, prev: n.PrevCertSerial, removed: n.Removed}
	}
}

// serverTLS is the TLS configuration the coordinator serves with.
func (au *authority) serverTLS() *tls.Config {
	return pki.ServerTLS(au.server.Load)
}

// ensureServerCert loads the server certificate, or issues a new one when
// there is none, it names other hosts than hosts, or it is about to expire.
func (au *authority) ensureServerCert(hosts []string) error {
	hosts = sortedUnique(hosts)
	certPath, keyPath := filepath.Join(au.dir, serverCertFile), filepath.Join(au.dir, serverKeyFile)
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		if pair, err := pki.KeyPair(append(certPEM, au.ca.CertPEM...), keyPEM); err == nil {
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err == nil && slices.Equal(certHosts(leaf), hosts) && time.Until(leaf.NotAfter) > serverCertRenew &&
				leaf.CheckSignatureFrom(au.ca.Cert) == nil {
				au.server.Store(pair)
				return nil
			}
		}
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	issued, err := au.ca.IssueServer(key, hosts, serverCertTTL)
	if err != nil {
		return err
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("save the server key: %w", err)
	}
	if err := atomicfile.WriteBytes(certPath, issued.CertPEM, 0o644); err != nil {
		return fmt.Errorf("save the server certificate: %w", err)
	}
	// The chain carries the CA, so an agent with only a token's
	// fingerprint can check it.
	pair, err := pki.KeyPair(append(issued.CertPEM, au.ca.CertPEM...), keyPEM)
	if err != nil {
		return err
	}
	au.server.Store(pair)
	au.log.Info("issued the server certificate", "hosts", hosts, "expires", issued.Cert.NotAfter)
	return nil
}

// certHosts are the hosts a server certificate names besides ServerName.
func certHosts(c *x509.Certificate) []string {
	var hosts []string
	for _, d := range c.DNSNames {
		if d != pki.ServerName {
			hosts = append(hosts, d)
		}
	}
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return sortedUnique(hosts)
}

// listenHosts are the hosts the server certificate names for a listen or
// advertise address: its host, and for a wildcard or loopback one the
// loopback names.
func listenHosts(addrs ...string) []string {
	var hosts []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		ip := net.ParseIP(host)
		switch {
		case host == "" || (ip != nil && ip.IsUnspecified()):
			hosts = append(hosts, "127.0.0.1", "::1", "localhost")
		case host == "localhost" || (ip != nil && ip.IsLoopback()):
			hosts = append(hosts, host, "localhost")
		default:
			if ip != nil {
				host = ip.String()
			}
			hosts = append(hosts, host)
		}
	}
	return hosts
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return slices.Compact(out)
}

// Errors of identify, as the caller reads them.
var (
	errRevoked = errors.New("credential revoked")
	errRemoved = errors.New("node removed")
)

// identify verifies a peer certificate and checks that what it names is
// still allowed: a node that was not removed, with one of its current
// certificates; a credential that was not revoked, with its certificate.
func (au *authority) identify(cert *x509.Certificate, now time.Time) (pki.Identity, error) {
	id, err := au.verifier.Verify(cert, now)
	if err != nil {
		return pki.Identity{}, err
	}
	au.mu.RLock()
	defer au.mu.RUnlock()
	switch id.Role {
	case pki.RoleNode:
		n, ok := au.nodes[id.Name]
		switch {
		case !ok:
			return pki.Identity{}, fmt.Errorf("%w: node %s is unknown", errRemoved, id.Name)
		case n.removed:
			return pki.Identity{}, fmt.Errorf("%w: node %s was removed by an admin", errRemoved, id.Name)
		case id.Serial != n.serial && id.Serial != n.prev:
			return pki.Identity{}, fmt.Errorf("%w: node %s has a newer certificate", errRevoked, id.Name)
		}
	case pki.RoleClient, pki.RoleAdmin:
		c, ok := au.creds[id.Name]
		switch {
		case !ok || c.Serial != id.Serial || c.Role != string(id.Role):
			return pki.Identity{}, fmt.Errorf("%w: credential %q is not one this coordinator issued (or it was issued again)", errRevoked, id.Name)
		case c.Revoked:
			return pki.Identity{}, fmt.Errorf("%w: credential %q was revoked", errRevoked, id.Name)
		}
	}
	return id, nil
}

// setNode records a node's current certificate (after a registration or a
// renewal) or its removal.
func (au *authority) setNode(n *store.Node) {
	au.mu.Lock()
	defer au.mu.Unlock()
	au.nodes[n.ID] = nodeCert{serial: n.CertSerial, prev: n.PrevCertSerial, removed: n.Removed}
}

// caPEM is the CA certificate in PEM.
func (au *authority) caPEM() []byte { return bytes.Clone(au.ca.CertPEM) }

// currentNode says whether serial is one of node's current certificates
// and the node was not removed.
func (au *authority) currentNode(node, serial string) bool {
	au.mu.RLock()
	defer au.mu.RUnlock()
	n, ok := au.nodes[node]
	return ok && !n.removed && serial != "" && (serial == n.serial || serial == n.prev)
}
