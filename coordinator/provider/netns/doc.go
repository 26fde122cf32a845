// Package netns is the coordinator's local multi-node provider
// (provider.Provider "netns"; `coordinator serve --provider netns --nodes
// 3`): it builds a cluster of network namespaces on a bridge with one
// dockerd each (internal/netns), and each node it creates is a
// cloudml-agent in a namespace that has none, pointed at the coordinator
// through the bridge and supervised by local.Agents, as the local
// provider's agents are. Close tears all of it down, leaving no namespace,
// bridge, iptables rule, mount or process behind. The agents then form a
// real Docker Swarm of those daemons, as on cloud machines.
//
// It needs root and docker.io (with iproute2 and iptables); without them
// New fails with netns.Check's message saying what to install.
//
// Wiring: the namespaces reach the host only through the bridge address
// (HostAddr, e.g. 10.213.0.1), which exists once the cluster does. It is a
// provider.Preparer: the coordinator calls Prepare (Setup) before it
// listens, then listens on ListenAddr(0) too (nothing is exposed beyond the
// bridge) and opens the swarm ports to the cluster's subnet only. Without
// Prepare, listen on a wildcard address (0.0.0.0:port) before Start: Start
// rewrites a wildcard target to HostAddr:port for the agents and refuses a
// loopback one, which no namespace can reach.
//
// The namespaces are the machines: --nodes of them, made once. Node i
// (1-based, like the local provider) runs its agent with --work-dir
// WorkDir/node-i, --address its bridge address, --hostname its namespace's
// name and DOCKER_HOST set to its own daemon; its provider id is
// "<namespace>-<k>" for the namespace's k-th node.
package netns
