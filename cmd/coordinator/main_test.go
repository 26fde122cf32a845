package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider"
)

func TestProvidersAreRegisteredWithTheirUsage(t *testing.T) {
	f := newFlags(coordinator.DefaultConfig())
	reg := f.providers()
	if diff := cmp.Diff([]string{"local", "netns", "digitalocean", "none"}, reg.Names()); diff != "" {
		t.Errorf("providers (-want +got):\n%s", diff)
	}
	for name, starts := range map[string]bool{"local": true, "netns": true, "digitalocean": true, "none": false} {
		if e, _ := reg.Lookup(name); e.StartNodes != starts {
			t.Errorf("%s starts nodes: %v, want %v", name, e.StartNodes, starts)
		}
	}
	help := usage(reg)
	for _, line := range []string{
		"  local         N agents on this machine as child processes (--nodes N); tasks\n                run as plain processes\n",
		"  none          agents are started elsewhere and join with a join token\n",
	} {
		if !strings.Contains(help, line) {
			t.Errorf("usage lacks %q:\n%s", line, help)
		}
	}
}

func TestFlagsBuildTheProvider(t *testing.T) {
	f := newFlags(coordinator.DefaultConfig())
	if err := f.fs.Parse([]string{"--provider", "local", "--slots", "3", "--agent-bin", "/bin/true", "--agent-log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	if f.provider != "local" || f.nodes != 2 {
		t.Errorf("--provider %q --nodes %d, want local and the default 2", f.provider, f.nodes)
	}
	p, err := f.providers().New(f.provider, provider.Env{StateDir: t.TempDir()})
	if err != nil || p.Name() != "local" {
		t.Fatalf("New(local) = %v, %v", p, err)
	}
	if f := newFlags(coordinator.DefaultConfig()); f.provider != "none" {
		t.Errorf("default --provider = %q, want none", f.provider)
	}
}

func TestServeRefusesBadProviders(t *testing.T) {
	f := newFlags(coordinator.DefaultConfig())
	err := serve(t.Context(), f.cfg, f.providers(), "gcp", 2)
	if !errors.Is(err, provider.ErrUnknownProvider) || !strings.Contains(err.Error(), `"local", "netns", "digitalocean" or "none"`) {
		t.Errorf("serve --provider gcp = %v, want the known names", err)
	}
	f.nodes = 0
	if err := serve(t.Context(), f.cfg, f.providers(), "local", 0); err == nil || !strings.Contains(err.Error(), "nodes must be at least 1") {
		t.Errorf("serve --provider local --nodes 0 = %v, want the error it gave before", err)
	}
}

// TestLendBucketTokensFlag: --lend-bucket-tokens is on by default with
// digitalocean (droplets have no Google credential) and off otherwise, and
// either way the flag decides.
func TestLendBucketTokensFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--provider", "digitalocean"}, true},
		{[]string{"--provider", "digitalocean", "--lend-bucket-tokens=false"}, false},
		{[]string{"--provider", "local"}, false},
		{[]string{"--provider", "none", "--lend-bucket-tokens"}, true},
	} {
		f := newFlags(coordinator.DefaultConfig())
		if err := f.fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		f.bucketTokenDefaults()
		if got := f.cfg.BucketTokens != nil; got != c.want {
			t.Errorf("%v: lends bucket tokens %v, want %v", c.args, got, c.want)
		}
		if _, ok := f.cfg.BucketTokens.(*googleTokens); c.want && (!ok || f.cfg.BucketTokensUnscoped) {
			t.Errorf("%v: lends from %T (unscoped %v), want this host's Google credentials, narrowed", c.args, f.cfg.BucketTokens, f.cfg.BucketTokensUnscoped)
		}
	}
}

// TestLendBucketTokensToAnEmulator: with STORAGE_EMULATOR_HOST (test/do's
// fake GCS) the coordinator lends a placeholder, unscoped: there is no STS
// and the emulator checks no token.
func TestLendBucketTokensToAnEmulator(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
	f := newFlags(coordinator.DefaultConfig())
	if err := f.fs.Parse([]string{"--provider", "digitalocean"}); err != nil {
		t.Fatal(err)
	}
	f.bucketTokenDefaults()
	if f.cfg.BucketTokens == nil || !f.cfg.BucketTokensUnscoped {
		t.Fatalf("lends %T unscoped %v; want a placeholder, unscoped", f.cfg.BucketTokens, f.cfg.BucketTokensUnscoped)
	}
	if tok, err := f.cfg.BucketTokens.Token(); err != nil || tok.AccessToken == "" {
		t.Errorf("placeholder token = %v, %v", tok, err)
	}
}

// TestGoogleTokensWithoutCredentials: a coordinator whose host has no
// Google credential still builds its token source; the first token asked
// for fails with ErrNoGoogleCredentials, which tells the node what to do.
func TestGoogleTokensWithoutCredentials(t *testing.T) {
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", t.TempDir()+"/no-such-key.json")
	_, err := (&googleTokens{}).Token()
	if !errors.Is(err, coordinator.ErrNoGoogleCredentials) || !strings.Contains(err.Error(), "no-such-key.json") {
		t.Fatalf("Token without credentials = %v; want ErrNoGoogleCredentials naming the file", err)
	}
}
