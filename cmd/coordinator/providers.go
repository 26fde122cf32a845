package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/digitalocean"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/coordinator/provider/netns"
)

// providers returns the registry --provider chooses from; its factories
// read f's flags once parsed. A new provider (digitalocean) registers here
// with its own flags.
func (f *flags) providers() *provider.Registry {
	var r provider.Registry
	r.Register(provider.Entry{
		Name:       local.Name,
		Usage:      "N agents on this machine as child processes (--nodes N); tasks\nrun as plain processes",
		StartNodes: true,
		New: func(env provider.Env) (provider.Provider, error) {
			if f.nodes < 1 {
				return nil, fmt.Errorf("nodes must be at least 1, got %d", f.nodes)
			}
			cfg := f.local
			cfg.WorkDir = nodesDir(cfg.WorkDir, env)
			return local.New(cfg, env.Logger)
		},
	})
	r.Register(provider.Entry{
		Name: netns.Name,
		Usage: "a Docker Swarm of N nodes on this machine: one network namespace,\n" +
			"dockerd and agent per node; container jobs (--image) run as swarm\n" +
			"services (needs root, docker.io, iproute2 and iptables)",
		StartNodes: true,
		New: func(env provider.Env) (provider.Provider, error) {
			cfg := f.netns
			cfg.Nodes, cfg.Slots, cfg.AgentBinary, cfg.LogLevel = f.nodes, f.local.Slots, f.local.AgentBinary, f.local.LogLevel
			cfg.WorkDir = nodesDir(cfg.WorkDir, env)
			return netns.New(cfg, env.Logger)
		},
	})
	r.Register(provider.Entry{
		Name: digitalocean.Name,
		Usage: "DigitalOcean droplets that boot the agent from cloud-init, with the\n" +
			"API token in " + digitalocean.TokenEnv + "; --advertise must be reachable from them;\n" +
			"--nodes droplets at start (default 0: 'cluster up' makes them)",
		StartNodes: true,
		New: func(env provider.Env) (provider.Provider, error) {
			cfg := f.do
			tok, err := doToken(f.doTokenFile)
			if err != nil {
				return nil, err
			}
			cfg.Token = tok
			if !strings.HasSuffix(cfg.APIURL, "/") {
				cfg.APIURL += "/"
			}
			cfg.AgentLogLevel = f.local.LogLevel
			return digitalocean.New(cfg, env.Logger)
		},
	})
	r.Register(provider.Entry{
		Name:  provider.NoneName,
		Usage: "agents are started elsewhere and join with a join token\n('cloudml-client token create')",
		New:   func(provider.Env) (provider.Provider, error) { return provider.None{}, nil },
	})
	return &r
}

// nodesDir is dir, or StateDir/nodes by default.
func nodesDir(dir string, env provider.Env) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(env.StateDir, "nodes")
}

// addProviderFlags defines the flags of the providers that have their own
// (digitalocean's).
func (f *flags) addProviderFlags() {
	fs := f.fs
	fs.StringVar(&f.do.Region, "do-region", f.do.Region, "digitalocean provider: region of the droplets")
	fs.StringVar(&f.do.Size, "do-size", f.do.Size, "digitalocean provider: default droplet size (a pool may ask for another)")
	fs.StringVar(&f.do.Image, "do-image", f.do.Image, "digitalocean provider: droplet image slug or id")
	fs.Func("do-ssh-keys", "digitalocean provider: comma-separated SSH key ids or fingerprints of the account to install on droplets (default: none; CloudML needs no SSH)", func(v string) error {
		f.do.SSHKeys = nil
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				f.do.SSHKeys = append(f.do.SSHKeys, k)
			}
		}
		return nil
	})
	fs.BoolVar(&f.do.Firewall, "do-firewall", f.do.Firewall, "digitalocean provider: put the cluster's droplets behind the DigitalOcean cloud firewall cloudml-<cluster>, made before the first droplet, that admits only the cluster's droplets (and SSH on 22 with --do-ssh-keys); false only if you manage your own firewall, since Docker Swarm's ports otherwise answer on the droplets' public addresses")
	fs.StringVar(&f.do.VPC, "do-vpc", "", "digitalocean provider: uuid of the VPC droplets join (default: the cluster's own, cloudml-<cluster>-<region>, made at the first create)")
	fs.StringVar(&f.do.APIURL, "do-api-url", f.do.APIURL, "digitalocean provider: API base URL (tests and demos: the DigitalOcean API test server)")
	fs.StringVar(&f.do.MetadataURL, "do-metadata-url", f.do.MetadataURL, "digitalocean provider: the droplet metadata service the agents read their droplet id from (tests and demos: the test server's)")
	fs.StringVar(&f.doTokenFile, "do-token-file", "", "digitalocean provider: file holding the API token, when "+digitalocean.TokenEnv+" is not set")
	fs.StringVar(&f.do.Cluster, "cluster-name", f.do.Cluster, "digitalocean provider: cluster name; every droplet is tagged "+digitalocean.ClusterTagPrefix+"<name>")
	fs.Float64Var(&f.do.MaxHourlyCost, "max-hourly-cost", 0, "digitalocean provider: refuse to create droplets that would bring the cluster past this many dollars an hour (default 0: no limit)")
}

// providerDefaults adjusts defaults to the chosen provider once the flags
// are parsed: digitalocean serves the agent download (on the gRPC port
// plus one, unless --download-listen says where) and starts no droplets
// unless --nodes says how many.
func (f *flags) providerDefaults() {
	if f.provider != digitalocean.Name {
		return
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["nodes"] {
		f.nodes = 0
	}
	if !set["download-listen"] {
		f.cfg.Download.Listen = coordinator.DefaultDownloadListen(f.cfg.ListenAddr)
		if f.cfg.Download.Listen == "" { // --listen with port 0: any port
			host, _, _ := net.SplitHostPort(f.cfg.ListenAddr)
			f.cfg.Download.Listen = net.JoinHostPort(host, "0")
		}
	}
}

// doToken is the DigitalOcean API token: DIGITALOCEAN_TOKEN, else the
// contents of file. Never a flag value, which the process list shows.
func doToken(file string) (string, error) {
	if tok := strings.TrimSpace(os.Getenv(digitalocean.TokenEnv)); tok != "" {
		return tok, nil
	}
	if file == "" {
		return "", fmt.Errorf("no DigitalOcean API token: set %s (or --do-token-file)", digitalocean.TokenEnv)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("DigitalOcean API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("DigitalOcean API token: " + file + " is empty")
	}
	return tok, nil
}

// nodeVerifier is a provider that checks its machines when they register
// (digitalocean: the droplet against the API).
type nodeVerifier interface {
	VerifyNode(ctx context.Context, claim coordinator.NodeClaim) error
}
