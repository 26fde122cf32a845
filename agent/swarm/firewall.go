package swarm

import "context"

// Swarm ports, as Docker documents them.
const (
	// ManagementPort is the cluster management port (raft, joins).
	ManagementPort = 2377
	// GossipPort carries node discovery, over TCP and UDP.
	GossipPort = 7946
	// OverlayPort carries overlay network traffic (VXLAN).
	OverlayPort = 4789
)

// Rule admits incoming traffic to one port.
type Rule struct {
	// Port is the destination port.
	Port int
	// Proto is "tcp" or "udp".
	Proto string
	// From is the source CIDR; "" admits any source.
	From string
}

// Firewall is the node's host firewall.
type Firewall interface {
	// Active reports whether the firewall filters incoming traffic; a
	// firewall that is not installed is not active.
	Active(ctx context.Context) (bool, error)
	// Allow admits the rules; rules already present are kept as they are.
	Allow(ctx context.Context, rules []Rule) error
}

// SwarmPorts returns the rules a swarm node needs (2377/tcp, 7946/tcp,
// 7946/udp, 4789/udp), one set per peer CIDR, or from anywhere when
// peerCIDRs is empty.
func SwarmPorts(peerCIDRs []string) []Rule {
	ports := []Rule{
		{Port: ManagementPort, Proto: "tcp"},
		{Port: GossipPort, Proto: "tcp"},
		{Port: GossipPort, Proto: "udp"},
		{Port: OverlayPort, Proto: "udp"},
	}
	froms := peerCIDRs
	if len(froms) == 0 {
		froms = []string{""}
	}
	rules := make([]Rule, 0, len(ports)*len(froms))
	for _, from := range froms {
		for _, p := range ports {
			p.From = from
			rules = append(rules, p)
		}
	}
	return rules
}
