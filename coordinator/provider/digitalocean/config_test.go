package digitalocean

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Token = "dop_v1_x"
	if err := good.Validate(); err != nil {
		t.Fatalf("a default config with a token: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no token":        {func(c *Config) { c.Token = "" }, TokenEnv},
		"api url":         {func(c *Config) { c.APIURL = "http://127.0.0.1:1" }, "trailing slash"},
		"cluster":         {func(c *Config) { c.Cluster = "ML_1" }, "cluster name"},
		"long cluster":    {func(c *Config) { c.Cluster = strings.Repeat("a", 31) }, "cluster name"},
		"region":          {func(c *Config) { c.Region = "" }, "region"},
		"vpc":             {func(c *Config) { c.VPC = "default" }, "VPC"},
		"ssh key":         {func(c *Config) { c.SSHKeys = []string{"ssh-ed25519 AAAA"} }, "SSH key"},
		"negative cost":   {func(c *Config) { c.MaxHourlyCost = -1 }, "cost"},
		"retry waits":     {func(c *Config) { c.Retry.WaitMax = 0 }, "retry"},
		"parallel":        {func(c *Config) { c.Parallel = 0 }, "parallel"},
		"no poll":         {func(c *Config) { c.PollInterval = 0 }, "poll"},
		"white in token":  {func(c *Config) { c.Token = "a b" }, "white space"},
		"image with path": {func(c *Config) { c.Image = "a/b" }, "image"},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error saying %q", name, err, tc.want)
		}
	}
	c := good
	c.SSHKeys = []string{"4242", "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"}
	if err := c.Validate(); err != nil {
		t.Errorf("SSH keys by id and fingerprint: %v", err)
	}
}

// TestStartChecks: Start refuses, with a reason, a target droplets could
// not use and a token, region, size or VPC the API does not accept.
func TestStartChecks(t *testing.T) {
	s := server(t, nil)
	for name, tc := range map[string]struct {
		cfg    func(*Config)
		target func(*provider.Target)
		want   string
	}{
		"no advertise":      {nil, func(tg *provider.Target) { tg.Advertise = "" }, "no --advertise"},
		"loopback":          {nil, func(tg *provider.Target) { tg.Advertise = "127.0.0.1:7443" }, "only reachable from this machine"},
		"unspecified":       {nil, func(tg *provider.Target) { tg.Advertise = "[::]:7443" }, "only reachable from this machine"},
		"localhost":         {nil, func(tg *provider.Target) { tg.Advertise = "localhost:7443" }, "only reachable from this machine"},
		"no port":           {nil, func(tg *provider.Target) { tg.Advertise = "coord.example.com" }, "not host:port"},
		"no agent download": {nil, func(tg *provider.Target) { tg.AgentURL = "" }, "--download-listen"},
		"bad token":         {func(c *Config) { c.Token = "dop_v1_wrong" }, nil, "token was refused (401): check " + TokenEnv},
		"unknown region":    {func(c *Config) { c.Region = "mars1" }, nil, "no region mars1"},
		"closed region":     {func(c *Config) { c.Region = "ams2" }, nil, "region ams2 is not available"},
		"unknown size":      {func(c *Config) { c.Size = "s-99" }, nil, `no droplet size "s-99"`},
		"size not there":    {func(c *Config) { c.Region, c.Size = "blr1", "c-16" }, nil, "size c-16 is not available in region blr1"},
		"unknown VPC":       {func(c *Config) { c.VPC = "00000000-0000-4000-8000-000000000000" }, nil, "no VPC"},
		"VPC elsewhere":     {func(c *Config) { c.VPC = s.VPCs()[0] }, nil, "is in region nyc1, not fra1"},
	} {
		cfg := testConfig(s)
		if tc.cfg != nil {
			tc.cfg(&cfg)
		}
		tg, _ := target(t, nil)
		if tc.target != nil {
			tc.target(&tg)
		}
		p := newProvider(t, cfg)
		err := p.Start(t.Context(), tg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start = %v, want an error saying %q", name, err, tc.want)
		}
		if _, err := p.List(t.Context()); !errors.Is(err, provider.ErrNotStarted) {
			t.Errorf("%s: List after a failed Start = %v, want ErrNotStarted", name, err)
		}
	}
	// A given VPC in the region is used as it is.
	cfg := testConfig(s)
	cfg.VPC = s.VPCs()[6] // fra1's default
	p := newProvider(t, cfg)
	tg, _ := target(t, nil)
	if err := p.Start(t.Context(), tg); err != nil {
		t.Fatalf("Start with fra1's VPC: %v", err)
	}
	nodes, err := p.Create(t.Context(), provider.CreateRequest{Request: "v", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Droplets()[0]; d.VPCUUID != cfg.VPC || len(s.VPCs()) != len(dofake.DefaultRegions())-1 || nodes[0].ID == "" {
		t.Errorf("droplet in VPC %s (%d VPCs), want the one given, %s, and no new VPC", d.VPCUUID, len(s.VPCs()), cfg.VPC)
	}
	if err := p.Start(t.Context(), tg); err == nil {
		t.Error("a second Start succeeded")
	}
}
