package digitalocean

import (
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server runs a dofake server with DefaultConfig changed by mod.
func server(t *testing.T, mod func(*dofake.Config)) *dofake.Server {
	t.Helper()
	cfg := dofake.DefaultConfig()
	cfg.Logger = testutil.Logger(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := dofake.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// testConfig is a provider config for s, cluster "ml", with quick retries
// (1 to 10 ms, Retry-After still applies) and polls.
func testConfig(s *dofake.Server) Config {
	cfg := DefaultConfig()
	cfg.Token, cfg.APIURL, cfg.Cluster = s.Token(), s.URL(), "ml"
	cfg.Retry = RetryConfig{Max: 4, WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond}
	cfg.RequestTimeout, cfg.PollInterval, cfg.DeleteTimeout = 10*time.Second, 5*time.Millisecond, 20*time.Second
	return cfg
}

// minter is the coordinator's MintToken: real tokens pinning the test CA,
// each recorded with its label.
type minter struct {
	fingerprint string
	mu          sync.Mutex // protects labels, tokens
	labels      []string
	tokens      map[string]string // label → token
}

func (m *minter) Mint(label string, slots int) (string, error) {
	tok := pki.NewToken(m.fingerprint).String()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.labels = append(m.labels, label)
	m.tokens[label] = tok
	return tok, nil
}

func (m *minter) Labels() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.labels...)
}

// Secrets returns the secret of every token minted.
func (m *minter) Secrets(t *testing.T) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.tokens {
		tok, err := pki.ParseToken(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.Secret)
	}
	return out
}

// target is a coordinator as droplets see it, with a fresh CA; mint, when
// set, is called for each token besides m.
func target(t *testing.T, mint func(string, int) (string, error)) (provider.Target, *minter) {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "CloudML coordinator CA")
	if err != nil {
		t.Fatal(err)
	}
	m := &minter{fingerprint: ca.Fingerprint(), tokens: map[string]string{}}
	tg := provider.Target{
		Addr:        "127.0.0.1:7443",
		Advertise:   "coord.example.com:7443",
		CACertPEM:   ca.CertPEM,
		AgentURL:    "https://coord.example.com:7444/v1/agent/linux-amd64",
		AgentSHA256: strings.Repeat("0123456789abcdef", 4),
		MintToken:   m.Mint,
	}
	if mint != nil {
		tg.MintToken = func(label string, slots int) (string, error) {
			if _, err := mint(label, slots); err != nil {
				return "", err
			}
			return m.Mint(label, slots)
		}
	}
	return tg, m
}

// harness is a started provider against its own dofake server.
type harness struct {
	s *dofake.Server
	p *Provider
	m *minter
}

// start runs a server changed by smod and a provider for it changed by
// cmod, started.
func start(t *testing.T, smod func(*dofake.Config), cmod func(*Config)) *harness {
	t.Helper()
	s := server(t, smod)
	cfg := testConfig(s)
	if cmod != nil {
		cmod(&cfg)
	}
	p := newProvider(t, cfg)
	tg, m := target(t, nil)
	if err := p.Start(t.Context(), tg); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return &harness{s: s, p: p, m: m}
}

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg, testutil.Logger(t).Named("digitalocean"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// tagged returns the droplets the server shows with the cluster tag of
// cluster "ml".
func tagged(s *dofake.Server) []dofake.Droplet {
	var out []dofake.Droplet
	for _, d := range s.Droplets() {
		for _, tag := range d.Tags {
			if tag == ClusterTag("ml") {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// waitActive polls until droplet id is active, for at most 10 s.
func waitActive(t *testing.T, s *dofake.Server, id int) dofake.Droplet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok := s.Droplet(id)
		if !ok {
			t.Fatalf("droplet %d is gone", id)
		}
		if d.Status == "active" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("droplet %d still %q after 10 s", id, d.Status)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}
