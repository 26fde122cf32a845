// Package netnsboot makes dofake's droplets real machines: a
// dofake.Booter whose droplets are the nodes of a pool of network
// namespaces (internal/netns), each with its own dockerd, that boot their
// user-data as cloud-init does. With it, the DigitalOcean provider's tests
// and `make demo-do` create droplets through godo that install and start
// cloudml-agent, register with the coordinator over mutual TLS and form a
// Docker Swarm, with no DigitalOcean account.
//
//	b, err := netnsboot.New(ctx, cfg)             // the pool: cfg.Nodes namespaces and daemons
//	defer b.Close()
//	s, err := dofake.Start(dofake.Config{..., Booter: b, MetadataAddr: b.HostAddr() + ":0"})
//	defer s.Close()                                // before b.Close
//	err = b.RouteMetadata(ctx, strings.TrimPrefix(s.MetadataURL(), "http://"))
//	// serve the coordinator (and its --download-listen) on b.HostAddr()
//
// # A droplet's machine
//
// Boot takes a free node of the pool (waiting for one whose droplet is
// being halted; ErrNoFreeNode when every node runs a droplet) and makes
// it the droplet's machine. The node's dockerd runs in a mount
// namespace of its own (netns.Config.PrivateMounts); the droplet's
// processes join that namespace, the node's network namespace and its
// UTS namespace (nsenter --target <dockerd> --mount --uts --net), so the
// agent and the daemon see one file system, as on a droplet: a swarm
// task's bind mount of the agent's work dir finds what the agent staged.
// There Boot mounts, for this droplet only:
//
//   - an overlay on each of /etc, /usr/local and /var/lib, its upper layer
//     in WorkDir/droplets/<id>/overlay: what the droplet writes there
//     (/etc/systemd/system/*.service, /usr/local/bin/cloudml-agent) is its
//     own, and the host's files show through below;
//   - empty directories of its own (WorkDir/droplets/<id>/own) over
//     /etc/cloudml, /usr/local/lib/cloudml and /var/lib/cloudml, whatever
//     the host has there;
//   - the node's Docker socket over /run/docker.sock (/var/run/docker.sock);
//
// and it sets the hostname to the droplet's name (which the node's
// dockerd then reports, so `docker node ls` shows droplet names) and adds
// the public address. All but the hostname is done ahead, while the node
// is free (at New, and after each halt before the node is free again;
// its directory is then WorkDir/droplets/prep-<node>-<n>, linked from
// WorkDir/droplets/<id> at the boot): Boot takes such a node and only
// names it, in 30-50 ms where the whole setup took about 0.12 s, as a
// cloud's machine is up before a droplet is placed on it. A node whose
// preparation failed is set up at its boot. The droplet turns active and
// cloud-init runs on its own.
//
// Addresses: the private one is the node's own on the bridge (offset 10+i
// of the subnet); the public one is a second address of the node's eth0
// on the same bridge (offset 110+i), so it is reachable too, from the
// other nodes and the host. Connections a droplet opens to the host leave
// from its private address: the coordinator is on the droplets' private
// network, as a coordinator droplet in their VPC would be. The metadata
// service answers by either.
//
// # cloud-init
//
// The user-data runs as on first boot: a #cloud-config that
// coordinator/cloudinit rendered (cloudinit.Parse refuses other keys) has
// its write_files written in the droplet (mode and owner; directories
// 0755) and its runcmd run in order, stopping at the first that fails; a
// #! script is run as it is; empty user-data does nothing. Commands run
// as root from / with PATH=WorkDir/droplets/<id>/bin:<systemd's PATH>,
// HOME=/root, LANG=C.UTF-8; their output goes to Config.Console (as
// cloud-init-output.log would have it) and Machine keeps its last lines.
// That bin directory holds two stand-ins:
//
//   - systemctl: daemon-reload, enable/disable [--now], start, stop,
//     restart and is-active of service units in /etc/systemd/system, asked
//     of the harness over a unix socket (curl). A started unit's ExecStart
//     (split at white space; quotes, variables and specifiers are refused)
//     runs in the droplet with systemd's PATH, LANG and what
//     SetDefaultEnvironment set (the image's DefaultEnvironment=) and
//     nothing else in its environment, its output to the console; it is started again as
//     Restart= (no, always, on-failure) and RestartSec= say, except after
//     an exit status in RestartPreventExitStatus=. Stopping it sends
//     SIGTERM, then SIGKILL after Config.StopTimeout. Other keys
//     (dependencies, KillMode, Type=simple) are ignored; enable without
//     --now only records it, since a droplet is never rebooted.
//   - apt-get, which fails (exit 100): nothing is installed on the host.
//     The bootstrap script's `command -v docker` finds the host's docker
//     CLI, so it skips its apt-get install of docker.io.
//
// So the rendered user-data installs the agent as on a droplet: curl
// fetches it from the coordinator's download endpoint on the bridge
// address, checked against the CA in /etc/cloudml/ca.crt, the script
// checks its sha256 and moves it to /usr/local/bin/cloudml-agent, and
// `systemctl enable --now cloudml-agent.service` starts it with the
// unit's flags: --docker unix:///var/run/docker.sock is the node's
// daemon, --work-dir /var/lib/cloudml the droplet's own.
//
// # Metadata
//
// RouteMetadata makes http://169.254.169.254/ reach dofake's metadata
// listener on the bridge address from every node (a route in each node, a
// nat rule on the bridge that keeps the source address), so user-data
// with the default metadata URL works: the agent reads its droplet id,
// name and addresses as on DigitalOcean. Without it, render the
// user-data with MetadataURL set to the listener's URL.
//
// # Halt and reuse
//
// Halt (on the droplet's DELETE, or when the server closes) stops
// cloud-init and the units, kills any other process left in the node
// outside its Docker (Stats.Strays), makes the node's dockerd leave its
// swarm and drop the containers, volumes, networks and images the droplet
// made (the images present before the boot stay: import test images
// into the pool through Cluster before creating droplets), unmounts the droplet's mounts,
// drops its address and files and restores the hostname: about 0.1 s,
// plus one or two for a swarm leave. The node then boots the next droplet
// clean.
// A node whose halt failed is not reused.
//
// # Timings (2 vCPUs, TestDropletsFormASwarm)
//
// A pool of 2 nodes: 0.6-1.0 s. Two droplets created at once: Boot 0.09 s
// each; cloud-init (54 MB agent fetched over TLS in 0.12-0.16 s, its
// sha256, the unit started) 0.9-1.0 s; both agents registered 1.1 s
// after the create, both in the swarm 2.3 s after it (4.6 s on a cold
// first run). The same two nodes joined by a script running docker swarm
// init and join (Booter.ScriptSwarm): 1.0-1.2 s. Halt: 0.4-1.6 s with a swarm to leave.
//
// # Requirements and cleanup
//
// Root, docker.io, iproute2, iptables (netns.Check), curl (for the
// user-data), overlayfs, and a /run/docker.sock to bind on (the host's
// dockerd makes it). Close halts what is left, removes the nat rule and
// closes the netns cluster; Leftovers lists what remains of a pool. A
// pool whose process died is cleaned by the next netns.Create (its
// processes, namespaces and mounts) and the next New (its nat rule).
package netnsboot
