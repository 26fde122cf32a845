package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider/digitalocean"
	"github.com/cloudml/cloudml/internal/dofake"
)

// TestDigitalOceanFromFlags: --provider digitalocean builds the provider
// from its flags and DIGITALOCEAN_TOKEN, serves the agent download by
// default, starts no droplets unless --nodes says so, and installs the
// provider's check of registering droplets.
func TestDigitalOceanFromFlags(t *testing.T) {
	t.Setenv(digitalocean.TokenEnv, "dop_v1_from_env")
	f := newFlags(coordinator.DefaultConfig())
	err := f.fs.Parse([]string{"--provider", "digitalocean", "--listen", ":7443", "--do-region", "nyc3", "--do-size", "c-2",
		"--do-image", "debian-12-x64", "--do-ssh-keys", "4242, 3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa",
		"--do-vpc", "5a1b3c2d-0000-4000-8000-000000000001", "--cluster-name", "ml", "--max-hourly-cost", "0.5",
		"--do-api-url", "http://127.0.0.1:1", "--agent-log-level", "debug", "--do-firewall=false"})
	if err != nil {
		t.Fatal(err)
	}
	f.providerDefaults()
	if f.nodes != 0 || f.cfg.Download.Listen != ":7444" {
		t.Errorf("--nodes %d, --download-listen %q; want 0 and :7444 by default", f.nodes, f.cfg.Download.Listen)
	}
	cfg, err := withProvider(f.cfg, f.providers(), f.provider, f.nodes)
	if err != nil {
		t.Fatalf("withProvider: %v", err)
	}
	p, ok := cfg.Provider.(*digitalocean.Provider)
	if !ok || cfg.VerifyNode == nil || cfg.Nodes != 0 {
		t.Fatalf("provider %T, VerifyNode set %v, nodes %d; want *digitalocean.Provider, set, 0", cfg.Provider, cfg.VerifyNode != nil, cfg.Nodes)
	}
	defer p.Close()
	want := digitalocean.DefaultConfig()
	want.APIURL, want.Cluster, want.Region, want.Size, want.Image = "http://127.0.0.1:1/", "ml", "nyc3", "c-2", "debian-12-x64"
	want.SSHKeys = []string{"4242", "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"}
	want.VPC, want.MaxHourlyCost, want.AgentLogLevel = "5a1b3c2d-0000-4000-8000-000000000001", 0.5, "debug"
	want.Firewall = false
	if diff := cmp.Diff(want, p.Config()); diff != "" {
		t.Errorf("provider config (-want +got):\n%s", diff)
	}

	f = newFlags(coordinator.DefaultConfig())
	if err := f.fs.Parse([]string{"--provider", "digitalocean", "--listen", "0.0.0.0:0", "--nodes", "3", "--download-listen", ""}); err != nil {
		t.Fatal(err)
	}
	f.providerDefaults()
	if f.nodes != 3 || f.cfg.Download.Listen != "" {
		t.Errorf("--nodes %d, --download-listen %q; want what was given, 3 and empty", f.nodes, f.cfg.Download.Listen)
	}
	if !f.do.Firewall {
		t.Errorf("--do-firewall is off by default, want on")
	}
	f = newFlags(coordinator.DefaultConfig())
	if err := f.fs.Parse([]string{"--provider", "digitalocean", "--listen", "0.0.0.0:0"}); err != nil {
		t.Fatal(err)
	}
	if f.providerDefaults(); f.cfg.Download.Listen != "0.0.0.0:0" {
		t.Errorf("--download-listen with --listen on port 0 = %q, want any port", f.cfg.Download.Listen)
	}
}

// TestDigitalOceanToken: the token comes from DIGITALOCEAN_TOKEN, else
// --do-token-file; without either, the error names the variable.
func TestDigitalOceanToken(t *testing.T) {
	t.Setenv(digitalocean.TokenEnv, "")
	f := newFlags(coordinator.DefaultConfig())
	f.provider = digitalocean.Name
	if _, err := withProvider(f.cfg, f.providers(), f.provider, 0); err == nil || !strings.Contains(err.Error(), "set "+digitalocean.TokenEnv) {
		t.Errorf("no token: %v, want an error naming %s", err, digitalocean.TokenEnv)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(dofake.DefaultToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := doToken(file); err != nil || tok != dofake.DefaultToken {
		t.Errorf("doToken(file) = %q, %v", tok, err)
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := doToken(file); err == nil {
		t.Error("an empty token file was accepted")
	}
	t.Setenv(digitalocean.TokenEnv, "dop_v1_env")
	if tok, err := doToken(file); err != nil || tok != "dop_v1_env" {
		t.Errorf("doToken with the variable set = %q, %v; want the variable's", tok, err)
	}
}

// TestDigitalOceanVerifyNodeWired: the VerifyNode installed is the
// provider's, which asks the API (an unstarted provider cannot say).
func TestDigitalOceanVerifyNodeWired(t *testing.T) {
	s, err := dofake.Start(dofake.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Setenv(digitalocean.TokenEnv, s.Token())
	f := newFlags(coordinator.DefaultConfig())
	if err := f.fs.Parse([]string{"--provider", "digitalocean", "--do-api-url", s.URL()}); err != nil {
		t.Fatal(err)
	}
	cfg, err := withProvider(f.cfg, f.providers(), f.provider, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Provider.Close()
	err = cfg.VerifyNode(context.Background(), coordinator.NodeClaim{ProviderID: "500000001", PeerAddr: "198.18.0.2:1",
		TokenLabel: digitalocean.TokenLabel("cloudml", "r", "n")})
	if !errors.Is(err, digitalocean.ErrRefused) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("VerifyNode of an unknown droplet = %v, want the provider's refusal", err)
	}
}
