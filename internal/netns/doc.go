// Package netns builds a real multi-node cluster on one machine: a bridge,
// one network namespace per node with a veth on the bridge, and (with
// Config.Dockerd) one dockerd per namespace, so that Docker Swarm, the
// agents and their firewalls see N machines. Tests and the coordinator's
// netns provider (`coordinator serve --provider netns`) use it.
//
// Layout for a cluster named P with subnet S (default: the first free /24
// from 10.213.0.0/24 up): bridge "Pbr" with S.1 on the host; node i is the
// namespace "P-n<i>" (/var/run/netns/P-n<i>) whose eth0 (host side "Ph<i>")
// has S.(10+i). There is no default route in the namespaces: nodes reach
// each other and the host's bridge address only, and a registry or DNS
// lookup fails at once instead of timing out. The host's dockerd sets the
// FORWARD policy to DROP, so Create inserts
//
//	iptables -I FORWARD -i Pbr -o Pbr -m comment --comment cloudml-netns:P -j ACCEPT
//
// Programs run in a node with nsenter --net (Cluster.Command). `ip netns
// exec` must not be used for dockerd: it remounts /sys and dockerd then
// fails with "Devices cgroup isn't mounted".
//
// # dockerd per node (Docker 20.10.24, containerd 1.6.20, runc 1.1.5)
//
// Each daemon is started as
//
//	nsenter --net=/var/run/netns/P-n<i> -- unshare --uts -- sh -c 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"' P-n<i> \
//	  dockerd --config-file W/P-n<i>/daemon.json --data-root W/P-n<i>/data \
//	  --exec-root /run/cloudml-netns/P/n<i> --pidfile /run/cloudml-netns/P/n<i>/docker.pid \
//	  -H unix:///run/cloudml-netns/P/n<i>/docker.sock \
//	  --bridge=none --iptables=false --ip-masq=false \
//	  --containerd-namespace P-n<i> --containerd-plugins-namespace P-n<i>-plugins
//
// Why each matters, and what was found:
//
//   - Without --containerd, each dockerd starts its own containerd (socket
//     and state under its exec root, root under its data root) inside the
//     namespace; that works and keeps nodes independent, so no --containerd
//     is passed. The distinct containerd namespaces still matter: shims and
//     runc state are keyed by namespace, and the host's dockerd uses "moby".
//   - --config-file points at an empty file so that /etc/docker/daemon.json
//     of the host does not apply.
//   - The exec root (and socket) live under /run/cloudml-netns, not under
//     the work dir, because unix socket paths are limited to 108 bytes and
//     containerd's own sockets sit deeper in the exec root.
//   - The UTS namespace gives each daemon its node's name as hostname, so
//     `docker node ls` shows P-n0, P-n1, ... instead of one name N times.
//   - Swarm: SwarmInit with AdvertiseAddr the node's address and ListenAddr
//     0.0.0.0:2377; workers join with AdvertiseAddr their own address.
//     dockerd logs harmless errors about missing net.ipv4.vs.* and
//     neigh.gc_thresh sysctls in a namespace, and "enabling default vlan on
//     bridge br0 failed".
//   - With a default route but no reachable registry, swarm tasks sit in
//     "Preparing" for about 20 s while the daemon tries to pull the image;
//     without the route they start at once. (`docker service create`
//     itself also spends 20 s trying to resolve the image's digest; the Go
//     client does not unless ServiceCreateOptions.QueryRegistry is set.)
//
// With Config.PrivateMounts the daemon is started by `unshare --uts
// --mount --propagation private` instead: it gets a mount namespace of its
// own, a copy of the host's that receives nothing from it afterwards.
// Whatever is mounted there (nsenter --target DockerPID --mount) the
// daemon and its containers see, the host does not, so a program joined
// to it shares its daemon's file system as on a machine: a bind mount of
// a path it made there works. The daemon's own mounts (layers, network
// namespace files) stay inside too, and go with the namespace once its
// last process exited; Close and Cleanup are unchanged.
//
// # Timings (2 vCPUs, measured by this package's tests)
//
// Create with 3 nodes and daemons: 0.4-0.8 s (network 0.1-0.2 s, daemons
// answering 0.3-0.6 s). Swarm init plus two joins until NodeList shows 3
// Ready nodes: 0.3-1.0 s. ImportBusybox into 3 daemons: 0.2-0.6 s. A
// 3-replica service of `echo; sleep 1` done on 3 nodes: 1.5-2.1 s. Close:
// 1.2-3.1 s. StopDocker 1.0 s, StartDocker 0.3 s. Cleanup of a cluster
// whose owner was SIGKILLed, with a container running: 1.2 s.
//
// # Teardown
//
// Create records the cluster in /run/cloudml-netns/P.json (owner pid and
// start time, work dir) before it creates anything. Close stops the daemons
// (running containers are killed first so no grace period is waited out),
// then Cleanup(P) kills whatever is left: processes in the namespaces or
// naming the exec roots or node dirs, and their descendants (container
// processes below the containerd shims first, then dockerd gets SIGTERM,
// then SIGKILL for the rest); it lazily unmounts everything below the exec
// roots and node dirs (overlay2 layers, the data root's own bind mount,
// netns bind mounts of libnetwork), deletes the namespaces (the veths go
// with them, asynchronously: Cleanup waits), the bridge and the iptables
// rules, removes the data roots and the state file. Each node's dockerd.log
// is kept. CleanupStale cleans every recorded cluster whose owner process is
// gone; Create runs it too, so a killed test run is cleaned by the next.
// Daemons are started with a parent-death signal (SIGTERM), so a killed
// owner takes them down.
//
// Known leftovers after a crash (not after Close): cgroup directories of
// SIGKILLed containers (empty, harmless), and the /run/netns mount that
// `ip netns add` creates once per boot.
package netns
