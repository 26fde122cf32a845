package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/internal/atomicfile"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The node's identity is its certificate. The agent makes its key, trades a
// join token and a CSR for a certificate (Register, on a connection that
// checked the coordinator against the token's CA fingerprint), keeps both
// in SecretsDir and renews the certificate at half its life over its
// authenticated connection. A restart reuses them; the join token is then
// not needed.

// ErrBadToken is returned by Run when the join token is malformed, pins
// another CA, or the coordinator rejects it: retrying cannot help.
var ErrBadToken = errors.New("register: join token refused")

// ErrNoToken is returned by Run when the node has no usable certificate and
// no join token to register with.
var ErrNoToken = errors.New("register: no node certificate and no join token (give one with --token-file or " + pki.JoinTokenEnv + "; 'cloudml-client token create' makes one)")

// SecretsDirName is the directory of the work dir that holds everything
// secret the agent keeps on disk: the node's key and certificate
// (NodeFile, 0600) and the CA (CAFile). It is created with mode 0700 and no
// task can read it (agent/runtime: another user and a covering mount for a
// root agent, Landlock for a non-root one). Secret files belong here and
// nowhere else in the work dir.
const SecretsDirName = "identity"

// SecretsDir is the secrets directory of the work dir workDir.
func SecretsDir(workDir string) string { return filepath.Join(workDir, SecretsDirName) }

// legacyIdentityFile is where agents kept a bearer node credential before
// node certificates; it is removed, since no coordinator accepts it now.
const legacyIdentityFile = "identity.json"

// prepareSecretsDir creates the secrets directory (0700, the agent's) and
// removes a bearer credential an older agent kept at the top of the work
// dir.
func (a *Agent) prepareSecretsDir() error {
	dir := SecretsDir(a.cfg.WorkDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create secrets dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	if err := os.Remove(filepath.Join(a.cfg.WorkDir, legacyIdentityFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the old node credential: %w", err)
	}
	return nil
}

// Files in SecretsDir.
const (
	// NodeFile holds the node certificate and its key, in PEM, mode 0600:
	// one file, so a renewal replaces both at once.
	NodeFile = "node.pem"
	// CAFile is the coordinator's CA certificate.
	CAFile = "ca.crt"
)

// identity is the node's certificate and key, and the CA.
type identity struct {
	NodeID string
	pair   *tls.Certificate
	leaf   *x509.Certificate
	ca     *x509.CertPool
	caPEM  []byte
}

// serial names the certificate; a new one means a new connection.
func (id *identity) serial() string { return pki.SerialOf(id.leaf) }

// renewAt is when the certificate should be renewed: half its life.
func (id *identity) renewAt() time.Time {
	return id.leaf.NotBefore.Add(id.leaf.NotAfter.Sub(id.leaf.NotBefore) / 2)
}

func (a *Agent) identityDir() string { return SecretsDir(a.cfg.WorkDir) }

// loadIdentity returns the saved identity, or nil if there is none or it
// expired.
func (a *Agent) loadIdentity() (*identity, error) {
	nodePEM, err := os.ReadFile(filepath.Join(a.identityDir(), NodeFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node identity: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(a.identityDir(), CAFile))
	if err != nil {
		a.log.Warn("node identity has no CA; registering again", "error", err)
		return nil, nil
	}
	id, err := parseIdentity(nodePEM, caPEM)
	if err != nil {
		a.log.Warn("ignoring unreadable node identity; registering again", "path", a.identityDir(), "error", err)
		return nil, nil
	}
	if !time.Now().Before(id.leaf.NotAfter) {
		a.log.Warn("node certificate expired; registering again", "node_id", id.NodeID, "expired", id.leaf.NotAfter)
		return nil, nil
	}
	return id, nil
}

func parseIdentity(nodePEM, caPEM []byte) (*identity, error) {
	pair, err := tls.X509KeyPair(nodePEM, nodePEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA file holds no certificate")
	}
	return &identity{NodeID: leaf.Subject.CommonName, pair: &pair, leaf: leaf, ca: pool, caPEM: caPEM}, nil
}

// saveIdentity writes the certificate and key (0600) and the CA into
// SecretsDir (0700), each atomically.
func (a *Agent) saveIdentity(certPEM, keyPEM, caPEM []byte) (*identity, error) {
	nodePEM := append(bytes.Clone(certPEM), keyPEM...)
	id, err := parseIdentity(nodePEM, caPEM)
	if err != nil {
		return nil, fmt.Errorf("the coordinator sent an unusable certificate: %w", err)
	}
	dir := a.identityDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, CAFile), caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("save the CA: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, NodeFile), nodePEM, 0o600); err != nil {
		return nil, fmt.Errorf("save the node certificate: %w", err)
	}
	return id, nil
}

// forgetIdentity deletes the saved certificate after the coordinator
// refused it.
func (a *Agent) forgetIdentity() {
	if err := os.Remove(filepath.Join(a.identityDir(), NodeFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("delete node identity", "error", err)
	}
}

// ensureIdentity loads the saved identity or registers, retrying transient
// errors with backoff. A rejected token is ErrBadToken.
func (a *Agent) ensureIdentity(ctx context.Context) (*identity, error) {
	id, err := a.loadIdentity()
	if err != nil || id != nil {
		return id, err
	}
	if a.cfg.JoinToken == "" {
		return nil, ErrNoToken
	}
	tok, err := pki.ParseToken(a.cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	a.log.Debug("registering: making the node key")
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		return nil, err
	}
	cl, err := a.registrationClaims(ctx)
	if err != nil {
		return nil, err
	}
	var pinned *x509.Certificate
	tlsCfg, err := pki.PinnedTLS(tok.CAFingerprint, func(c *x509.Certificate) { pinned = c })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	cc, err := a.dial(credentials.NewTLS(tlsCfg))
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", a.cfg.CoordinatorAddr, err)
	}
	defer cc.Close()
	client := cloudmlv1.NewAgentServiceClient(cc)
	bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		a.log.Debug("registering: calling the coordinator")
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		resp, err := client.Register(callCtx, &cloudmlv1.RegisterRequest{
			JoinToken: a.cfg.JoinToken, Csr: csr, Hostname: cl.hostname, Address: cl.address,
			Slots: int32(a.cfg.Slots), MemoryBytes: a.memory, Runtime: a.runtimeName(), ProviderId: cl.providerID,
		})
		cancel()
		switch {
		case err == nil:
			if pinned == nil || !bytes.Equal(pki.ParseCAPEM(resp.GetCaCertificate()), pinned.Raw) {
				return nil, fmt.Errorf("%w: the CA the coordinator sent is not the one its connection showed", ErrBadToken)
			}
			id, err := a.saveIdentity(resp.GetCertificate(), keyPEM, resp.GetCaCertificate())
			if err != nil {
				return nil, err
			}
			a.log.Info("registered", "node_id", id.NodeID, "token_id", tok.ID, "provider_id", cl.providerID, "certificate_expires", id.leaf.NotAfter)
			return id, nil
		case status.Code(err) == codes.Unauthenticated:
			return nil, fmt.Errorf("%w: %s", ErrBadToken, status.Convert(err).Message())
		case errors.Is(err, pki.ErrFingerprint) || strings.Contains(err.Error(), pki.ErrFingerprint.Error()):
			return nil, fmt.Errorf("%w: %s", ErrBadToken, pki.ErrFingerprint)
		}
		a.log.Warn("register failed; will retry", "coordinator", a.cfg.CoordinatorAddr, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// renew trades the current certificate for a new one (with a new key)
// before it expires.
func (a *Agent) renew(ctx context.Context, client cloudmlv1.AgentServiceClient, cur *identity) (*identity, error) {
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	resp, err := client.RenewCertificate(callCtx, &cloudmlv1.RenewCertificateRequest{Csr: csr})
	cancel()
	if err != nil {
		return nil, err
	}
	id, err := a.saveIdentity(resp.GetCertificate(), keyPEM, cur.caPEM)
	if err != nil {
		return nil, err
	}
	a.log.Info("node certificate renewed", "node_id", id.NodeID, "expires", id.leaf.NotAfter)
	return id, nil
}

// clientTLS is the transport of the node's own connection: the CA it
// registered with, its certificate.
func (id *identity) clientTLS() credentials.TransportCredentials {
	pair := id.pair
	return credentials.NewTLS(pki.ClientTLS(id.ca, func() *tls.Certificate { return pair }))
}

// memoryBytes reads MemTotal from /proc/meminfo; 0 if unknown.
func memoryBytes() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}
