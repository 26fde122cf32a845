package main

import (
	"fmt"
	"path/filepath"

	"github.com/cloudml/cloudml/coordinator/provider"
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
