package cloudinit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/cloudml/cloudml/internal/pki"
)

// Paths on the machine.
const (
	// CACertPath is the coordinator's CA certificate.
	CACertPath = "/etc/cloudml/ca.crt"
	// TokenPath is the join token, root's, mode 0600.
	TokenPath = "/etc/cloudml/join-token"
	// UnitPath is the agent's systemd unit.
	UnitPath = "/etc/systemd/system/" + UnitName
	// ScriptPath is the bootstrap script runcmd runs.
	ScriptPath = "/usr/local/lib/cloudml/bootstrap.sh"
	// AgentPath is where the script installs cloudml-agent.
	AgentPath = "/usr/local/bin/cloudml-agent"
	// WorkDir is the agent's work directory.
	WorkDir = "/var/lib/cloudml"
)

// UnitName is the agent's systemd unit.
const UnitName = "cloudml-agent.service"

// AgentExitNoToken is cloudml-agent's exit status when its join token is
// missing or refused: the unit does not restart it then.
const AgentExitNoToken = 3

// Defaults of Config.
const (
	// DefaultMetadataURL is DigitalOcean's droplet metadata service.
	DefaultMetadataURL = "http://169.254.169.254/metadata/v1"
	// DefaultDocker is the node's Docker daemon.
	DefaultDocker = "unix:///var/run/docker.sock"
)

// MaxBytes is the largest user-data DigitalOcean accepts (64 KiB).
const MaxBytes = 64 << 10

// ErrConfig is wrapped by every error of Validate.
var ErrConfig = errors.New("invalid user-data config")

// Config is what a machine's user-data is made of. Everything but
// JoinToken is public.
type Config struct {
	// Name labels the machine in the user-data's header comment.
	Name string
	// CoordinatorAddr is the host:port the agent dials: the coordinator's
	// advertise address.
	CoordinatorAddr string
	// CACertPEM is the coordinator's CA certificate.
	CACertPEM []byte
	// CAFingerprint is the CA's SHA-256 in hex; empty means computed from
	// CACertPEM. It must match CACertPEM and the join token's pin.
	CAFingerprint string
	// AgentURL is the https:// URL of the agent binary on the coordinator
	// (coordinator.AgentDownload).
	AgentURL string
	// AgentSHA256 is the binary's SHA-256 in hex, which the machine checks.
	AgentSHA256 string
	// JoinToken is the machine's single-use join token: the one secret.
	JoinToken string
	// Slots is the agent's --slots; 0 leaves the agent's default (the
	// machine's CPUs).
	Slots int
	// Hostname and Address are the agent's --hostname and --address; empty
	// means the droplet's own, from the metadata service.
	Hostname, Address string
	// MetadataURL is the metadata service the agent reads its droplet id
	// from (--metadata-url); default DefaultMetadataURL.
	MetadataURL string
	// Docker is the node's Docker daemon (--docker); default DefaultDocker.
	Docker string
	// SwarmRoot is the agent's --swarm-root; empty means its default.
	SwarmRoot string
	// LogLevel is the agent's --log-level; empty means info.
	LogLevel string
	// FoundSwarm makes the machine found the cluster's swarm as it boots:
	// the script starts `docker swarm init`, advertised at Address (or the
	// private address from the metadata service), beside the agent's
	// download, and the agent, asked to found the swarm, finds it made.
	// The coordinator sets it on one machine of a cluster with no swarm.
	FoundSwarm bool

	// root prefixes every path on the machine; tests run the script in a
	// directory.
	root string
}

// argRE is what a value may hold that goes into the unit's ExecStart or
// the script: no space, quote, $, %, backslash or control character, so
// neither systemd nor sh reads anything into it.
var argRE = regexp.MustCompile(`^[A-Za-z0-9._:/@\[\]+=,~-]+$`)

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// withDefaults fills the defaults.
func (c Config) withDefaults() Config {
	if c.MetadataURL == "" {
		c.MetadataURL = DefaultMetadataURL
	}
	if c.Docker == "" {
		c.Docker = DefaultDocker
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.CAFingerprint == "" {
		if cert, err := pki.ParseCert(c.CACertPEM); err == nil {
			c.CAFingerprint = pki.Fingerprint(cert)
		}
	}
	return c
}

// Validate checks c, with its defaults filled in.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	host, port, err := net.SplitHostPort(c.CoordinatorAddr)
	if err != nil || host == "" || !argRE.MatchString(c.CoordinatorAddr) {
		return bad("coordinator address %q is not host:port", c.CoordinatorAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return bad("coordinator address %q has no port number", c.CoordinatorAddr)
	}
	ca, err := pki.ParseCert(c.CACertPEM)
	if err != nil || !ca.IsCA || strings.Count(string(c.CACertPEM), "-----BEGIN") != 1 {
		return bad("CA certificate: want one PEM CA certificate (%v)", err)
	}
	if fp := pki.Fingerprint(ca); c.CAFingerprint != fp {
		return bad("CA fingerprint %s is not the CA certificate's (%s)", c.CAFingerprint, fp)
	}
	tok, err := pki.ParseToken(c.JoinToken)
	if err != nil {
		return bad("join token: %v", err)
	}
	if tok.CAFingerprint != c.CAFingerprint {
		return bad("the join token pins another CA than the certificate's")
	}
	u, err := url.Parse(c.AgentURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !argRE.MatchString(c.AgentURL) {
		return bad("agent URL %q is not a plain https:// URL", c.AgentURL)
	}
	if !hexRE.MatchString(c.AgentSHA256) {
		return bad("agent sha256 %q is not 64 lowercase hex digits", c.AgentSHA256)
	}
	if c.Slots < 0 {
		return bad("slots must not be negative, got %d", c.Slots)
	}
	if mu, err := url.Parse(c.MetadataURL); err != nil || (mu.Scheme != "http" && mu.Scheme != "https") || mu.Host == "" {
		return bad("metadata URL %q is not an http:// URL", c.MetadataURL)
	}
	for name, v := range map[string]string{
		"hostname": c.Hostname, "address": c.Address, "metadata URL": c.MetadataURL,
		"docker": c.Docker, "swarm root": c.SwarmRoot, "log level": c.LogLevel, "name": c.Name,
	} {
		if v != "" && !argRE.MatchString(v) {
			return bad("%s %q holds a character a unit file or shell would interpret", name, v)
		}
	}
	return nil
}
