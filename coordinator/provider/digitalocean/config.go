package digitalocean

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cloudml/cloudml/coordinator/cloudinit"
)

// Defaults of Config.
const (
	// DefaultAPIURL is DigitalOcean's API.
	DefaultAPIURL = "https://api.digitalocean.com/"
	// DefaultCluster names the cluster when none is given.
	DefaultCluster = "cloudml"
	// DefaultRegion, DefaultSize and DefaultImage are what a droplet is
	// made of when nothing else is asked for: Frankfurt, 2 vCPUs and 4 GiB
	// ($0.036 an hour), Ubuntu 24.04 LTS.
	DefaultRegion = "fra1"
	DefaultSize   = "s-2vcpu-4gb"
	DefaultImage  = "ubuntu-24-04-x64"
)

// TokenEnv is the environment variable cmd/coordinator reads the API token
// from; the token is never a flag value, which every user of the machine
// could read in the process list.
const TokenEnv = "DIGITALOCEAN_TOKEN"

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid digitalocean config")

// Config configures the provider.
type Config struct {
	// Token is the API token (a personal access token, or a custom-scope
	// one: see the package doc for the scopes it needs).
	Token string
	// APIURL is the API's base URL; tests point it at internal/dofake.
	APIURL string
	// Cluster names the cluster: every droplet carries the tag
	// "cloudml-cluster:<Cluster>", and only droplets with it are this
	// cluster's. Lowercase letters, digits and '-', at most 30.
	Cluster string
	// Region is the region slug every droplet is made in.
	Region string
	// Size is the default size slug (a CreateRequest without a size).
	Size string
	// Image is the image slug (or numeric id) droplets boot.
	Image string
	// VPC is the uuid of the VPC droplets join; empty means the cluster's
	// own, "cloudml-<Cluster>-<Region>", found or made at the first create,
	// so swarm traffic stays between the cluster's droplets.
	VPC string
	// Firewall puts the cluster's droplets behind the Cloud Firewall
	// "cloudml-<Cluster>" (firewall.go), found or made before the first
	// droplet: inbound only from the cluster's droplets (and SSH with
	// SSHKeys). Off only for users whose own firewall closes the swarm
	// ports, which are open on the droplets' public addresses otherwise.
	Firewall bool
	// SSHKeys are SSH key ids or fingerprints of the account to install on
	// every droplet; none by default (CloudML needs no SSH).
	SSHKeys []string
	// MaxHourlyCost refuses a create that would bring the cluster's
	// droplets to more than this many dollars an hour (list prices from
	// the sizes API); 0 means no guard.
	MaxHourlyCost float64
	// Retry bounds the retries of API calls that fail with 429, 5xx or a
	// lost connection.
	Retry RetryConfig
	// RequestTimeout bounds one API call, its retries included.
	RequestTimeout time.Duration
	// PollInterval is how often Delete asks whether a droplet is gone.
	PollInterval time.Duration
	// DeleteTimeout bounds a Delete whose context has no earlier deadline.
	DeleteTimeout time.Duration
	// Parallel is how many droplets Create and Delete work on at once.
	Parallel int
	// MetadataURL is the metadata service the agent reads its droplet id
	// from (its --metadata-url); default cloudinit.DefaultMetadataURL.
	// Tests with network-namespace droplets point it at dofake.
	MetadataURL string
	// AgentLogLevel is the droplets' agents' --log-level.
	AgentLogLevel string
}

// RetryConfig is how API calls are retried: godo's retrying transport for
// every call but a create, which Create retries itself after listing by
// the request's tag. A 429 or 503 waits its Retry-After; others back off
// exponentially from WaitMin to WaitMax.
type RetryConfig struct {
	// Max is the most retries of one call; 0 turns retries off.
	Max int
	// WaitMin and WaitMax bound the backoff between retries.
	WaitMin, WaitMax time.Duration
}

// DefaultConfig returns the defaults: the real API, cluster "cloudml" in
// fra1 with s-2vcpu-4gb Ubuntu 24.04 droplets behind the cluster's
// firewall, no SSH keys, no cost guard, 4 retries waiting 1 to 30 s.
func DefaultConfig() Config {
	return Config{
		APIURL:         DefaultAPIURL,
		Cluster:        DefaultCluster,
		Region:         DefaultRegion,
		Size:           DefaultSize,
		Image:          DefaultImage,
		Firewall:       true,
		Retry:          RetryConfig{Max: 4, WaitMin: time.Second, WaitMax: 30 * time.Second},
		RequestTimeout: 2 * time.Minute,
		PollInterval:   2 * time.Second,
		DeleteTimeout:  5 * time.Minute,
		Parallel:       5,
		MetadataURL:    cloudinit.DefaultMetadataURL,
		AgentLogLevel:  "info",
	}
}

var (
	// clusterRE fits a tag, a VPC name and the start of a hostname.
	clusterRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$`)
	slugRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// fingerprintRE is an MD5 fingerprint as DigitalOcean shows keys.
	fingerprintRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){15}$`)
)

// Validate checks c.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if c.Token == "" {
		return bad("no API token (set %s)", TokenEnv)
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		return bad("the API token holds white space")
	}
	u, err := url.Parse(c.APIURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasSuffix(u.Path, "/") {
		return bad("API URL %q: want http(s)://host/ with a trailing slash", c.APIURL)
	}
	switch {
	case !clusterRE.MatchString(c.Cluster):
		return bad("cluster name %q: want lowercase letters, digits and '-', at most 30", c.Cluster)
	case !slugRE.MatchString(c.Region):
		return bad("region %q is not a region slug (fra1, nyc3, ...)", c.Region)
	case !slugRE.MatchString(c.Size):
		return bad("size %q is not a size slug (s-2vcpu-4gb, ...)", c.Size)
	case c.Image == "" || strings.ContainsAny(c.Image, " /"):
		return bad("image %q is not an image slug or id", c.Image)
	case c.VPC != "" && !uuidRE.MatchString(c.VPC):
		return bad("VPC %q is not a VPC uuid", c.VPC)
	case c.MaxHourlyCost < 0:
		return bad("max hourly cost must not be negative, got %g", c.MaxHourlyCost)
	case c.Retry.Max < 0 || c.Retry.WaitMin < 0 || c.Retry.WaitMax < c.Retry.WaitMin:
		return bad("retry: want max >= 0 and 0 <= wait min <= wait max, got %+v", c.Retry)
	case c.RequestTimeout <= 0 || c.PollInterval <= 0 || c.DeleteTimeout <= 0:
		return bad("request timeout, poll interval and delete timeout must be positive")
	case c.Parallel < 1:
		return bad("parallel must be at least 1, got %d", c.Parallel)
	}
	for _, k := range c.SSHKeys {
		if _, err := strconv.Atoi(k); err != nil && !fingerprintRE.MatchString(k) {
			return bad("SSH key %q is neither a key id nor an MD5 fingerprint (aa:bb:...)", k)
		}
	}
	return nil
}

// Tag prefixes. A tag is ^[a-zA-Z0-9_\-:]+$, at most 255 characters: the
// cluster, pool and request names fit it by construction.
const (
	ClusterTagPrefix = "cloudml-cluster:"
	PoolTagPrefix    = "cloudml-pool:"
	RequestTagPrefix = "cloudml-req:"
)

// FounderTag marks the droplet made to found the cluster's swarm as it
// boots (provider.CreateRequest.FoundSwarm), so the mark survives a lost
// create response and a coordinator restart: List reads it back.
const FounderTag = "cloudml-swarm:founder"

// ClusterTag is the tag every droplet of cluster carries.
func ClusterTag(cluster string) string { return ClusterTagPrefix + cluster }

// vpcName is the name of the cluster's own VPC in region.
func vpcName(cluster, region string) string { return "cloudml-" + cluster + "-" + region }
