package netnsboot

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
)

// MetadataAddr is where a droplet finds its metadata service
// (http://169.254.169.254/metadata/v1/, dropletmeta.DefaultURL).
const MetadataAddr = "169.254.169.254"

// commentPrefix marks the pool's iptables rules; the name follows.
const commentPrefix = "cloudml-netnsboot:"

// bridge is the pool's bridge (netns names it "<name>br").
func (b *Booter) bridge() string { return b.cfg.Name + "br" }

// metadataRule is the nat rule that sends what the nodes send to
// 169.254.169.254:80 to target instead, keeping their source address.
func (b *Booter) metadataRule(target string) []string {
	return []string{"PREROUTING", "-i", b.bridge(), "-d", MetadataAddr + "/32", "-p", "tcp", "--dport", "80",
		"-m", "comment", "--comment", commentPrefix + b.cfg.Name, "-j", "DNAT", "--to-destination", target}
}

// RouteMetadata makes http://169.254.169.254/ on every node reach target,
// host:port on the pool's bridge address (dofake's Config.MetadataAddr
// listener), so that user-data with the default metadata URL works: the
// real service, too, answers every droplet at that address. Each node
// routes the address to the host, where a nat rule on the bridge
// (iptables -t nat PREROUTING -i <name>br, DNAT) rewrites the
// destination and keeps the node's source address, by which dofake tells
// the droplets apart. Close removes the rule; New removes those of pools
// whose bridge is gone.
func (b *Booter) RouteMetadata(ctx context.Context, target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("metadata target %q: %w", target, err)
	}
	if a, err := netip.ParseAddr(host); err != nil || a.String() != b.HostAddr() || port == "" || port == "0" {
		return fmt.Errorf("metadata target %q: want %s:<port>, the bridge address", target, b.HostAddr())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.metaRule != nil {
		iptables(ctx, append([]string{"-t", "nat", "-D"}, b.metaRule...)...)
		b.metaRule = nil
	}
	rule := b.metadataRule(target)
	if out, err := iptables(ctx, append([]string{"-t", "nat", "-I"}, rule...)...); err != nil {
		return fmt.Errorf("route the metadata address: %w: %s", err, out)
	}
	b.metaRule = rule
	b.log.Info("metadata address routed", "address", MetadataAddr+":80", "target", target)
	return nil
}

// routeMetadataAddr gives every node a route to 169.254.169.254 through
// the host.
func (b *Booter) routeMetadataAddr(ctx context.Context) error {
	for i := range b.nodes {
		cmd := b.cluster.Command(ctx, i, "ip", "route", "replace", MetadataAddr+"/32", "via", b.HostAddr(), "dev", "eth0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("node %d: route %s: %w: %s", i, MetadataAddr, err, out)
		}
	}
	return nil
}

// removeStaleRules deletes the nat rules of pools named name or whose
// bridge is gone (their owner died before Close).
func removeStaleRules(ctx context.Context, name string) {
	out, err := iptables(ctx, "-t", "nat", "-S", "PREROUTING")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		var owner string
		for i, w := range f {
			if w == "--comment" && i+1 < len(f) {
				owner, _ = strings.CutPrefix(strings.Trim(f[i+1], `"`), commentPrefix)
				if owner == f[i+1] {
					owner = ""
				}
			}
		}
		if owner == "" {
			continue
		}
		if _, err := net.InterfaceByName(owner + "br"); err == nil && owner != name {
			continue
		}
		f[0] = "-D"
		iptables(ctx, append([]string{"-t", "nat"}, f...)...)
	}
}

// metadataRules lists the nat rules of the pool named name.
func metadataRules(ctx context.Context, name string) []string {
	out, _ := iptables(ctx, "-t", "nat", "-S", "PREROUTING")
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, commentPrefix+name+" ") || strings.HasSuffix(line, commentPrefix+name) {
			rules = append(rules, line)
		}
	}
	return rules
}

func iptables(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	return string(out), err
}
