// Package netns is the coordinator's local multi-node provider
// (`coordinator serve --provider netns --nodes 3`): it builds a cluster of
// network namespaces on a bridge with one dockerd each (internal/netns),
// starts one cloudml-agent per namespace, pointed at the coordinator through
// the bridge, and tears all of it down when its context ends, leaving no
// namespace, bridge, iptables rule, mount or process behind. The agents
// then form a real Docker Swarm of those daemons, as on cloud machines.
//
// It needs root and docker.io (with iproute2 and iptables); without them
// New fails with netns.Check's message saying what to install.
//
// Wiring: the namespaces reach the host only through the bridge address
// (HostAddr, e.g. 10.213.0.1), which exists once the cluster does. Either
// call Setup first and listen on ListenAddr(port) (preferred: nothing is
// exposed beyond the bridge), or listen on a wildcard address
// (0.0.0.0:port) before Run. Run rewrites a wildcard target to
// HostAddr:port for the agents and refuses a loopback one, which no
// namespace can reach.
//
// Node i (1-based, like the local provider) runs its agent with
// --work-dir WorkDir/node-i, --address its bridge address, --hostname its
// namespace's name and DOCKER_HOST set to its own daemon.
package netns
