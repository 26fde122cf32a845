package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrSubnetInUse means the requested subnet overlaps a host address or route.
var ErrSubnetInUse = errors.New("subnet in use on this host")

// run runs a program and returns its output, or an error carrying it.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// hostPrefixes lists the IPv4 prefixes of the host's addresses and routes.
func hostPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := run(ctx, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(addrs, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					out = append(out, p.Masked())
				}
			}
		}
	}
	routes, err := run(ctx, "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		dst := f[0]
		if f[0] == "local" || f[0] == "broadcast" || f[0] == "unicast" {
			continue // host's own addresses, already listed
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

// chooseSubnet returns want if no host prefix overlaps it, or with want
// empty the first free /24 from AutoSubnetBase upwards.
func chooseSubnet(ctx context.Context, want string) (netip.Prefix, error) {
	used, err := hostPrefixes(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	free := func(p netip.Prefix) bool {
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	if want != "" {
		p := netip.MustParsePrefix(want)
		if !free(p) {
			return netip.Prefix{}, fmt.Errorf("%w: %s", ErrSubnetInUse, p)
		}
		return p, nil
	}
	base := netip.MustParsePrefix(AutoSubnetBase)
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(nodeAddr(base, i*256), 24)
		if free(p) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /24 from %s upwards", ErrSubnetInUse, AutoSubnetBase)
}

// createBridge creates the bridge with the host address and the FORWARD
// rule that lets the namespaces talk through it.
func createBridge(ctx context.Context, prefix string, subnet netip.Prefix) error {
	br := bridgeName(prefix)
	host := netip.PrefixFrom(nodeAddr(subnet, 1), subnet.Bits()).String()
	for _, args := range [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", host, "dev", br},
		{"ip", "link", "set", br, "up"},
		{"iptables", "-w", "-I", "FORWARD", "-i", br, "-o", br, "-m", "comment", "--comment", ruleComment(prefix), "-j", "ACCEPT"},
	} {
		if _, err := run(ctx, args[0], args[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// createNode creates namespace i with eth0 on the bridge at its address.
// There is deliberately no default route: lookups of registries and DNS
// fail at once instead of timing out (swarm tasks would otherwise sit in
// "preparing" for ~20 s while dockerd tries to pull).
func createNode(ctx context.Context, prefix string, subnet netip.Prefix, i int) error {
	ns, h, p := nsName(prefix, i), hostVeth(prefix, i), peerVeth(prefix, i)
	addr := netip.PrefixFrom(nodeAddr(subnet, 10+i), subnet.Bits()).String()
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", h, "type", "veth", "peer", "name", p},
		{"link", "set", p, "netns", ns},
		{"link", "set", h, "master", bridgeName(prefix), "up"},
		{"-n", ns, "link", "set", p, "name", "eth0"},
		{"-n", ns, "addr", "add", addr, "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// deleteNetwork removes the namespaces, links and FORWARD rules of prefix.
func deleteNetwork(ctx context.Context, prefix string) error {
	var errs []error
	for _, ns := range namespaces(prefix) {
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	linkRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(br|h[0-9]+|p[0-9]+)$`)
	for _, l := range links(ctx) {
		if linkRE.MatchString(l) {
			// A veth can vanish between the listing and its delete, as the
			// kernel removes it with its namespace: "No such device".
			if _, err := run(ctx, "ip", "link", "del", l); err != nil &&
				!strings.Contains(err.Error(), "Cannot find device") && !strings.Contains(err.Error(), "No such device") {
				errs = append(errs, err)
			}
		}
	}
	// A deleted namespace takes its veths with it asynchronously.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var left []string
		for _, l := range links(ctx) {
			if linkRE.MatchString(l) {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("links of %s remain: %s", prefix, strings.Join(left, ", ")))
			break
		}
	}
	for _, rule := range forwardRules(ctx, prefix) {
		if _, err := run(ctx, "iptables", append([]string{"-w", "-D", "FORWARD"}, rule...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// namespaces lists the named namespaces of prefix.
func namespaces(prefix string) []string {
	entries, err := os.ReadDir(NetnsDir)
	if err != nil {
		return nil
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-n[0-9]+$`)
	var out []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// links lists the host's interface names.
func links(ctx context.Context) []string {
	out, err := run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		name, _, _ = strings.Cut(name, "@")
		names = append(names, name)
	}
	return names
}

// forwardRules returns the FORWARD rules (as arguments after the chain)
// that mention the bridge of prefix or carry its comment.
func forwardRules(ctx context.Context, prefix string) [][]string {
	out, err := run(ctx, "iptables", "-w", "-S", "FORWARD")
	if err != nil {
		return nil
	}
	br := bridgeName(prefix)
	var rules [][]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "-A" || f[1] != "FORWARD" {
			continue
		}
		args := f[2:]
		hit := false
		for i, a := range args {
			args[i] = strings.Trim(a, `"`)
			if args[i] == br || args[i] == ruleComment(prefix) {
				hit = true
			}
		}
		if hit {
			rules = append(rules, args)
		}
	}
	return rules
}

// itoa is strconv.Itoa, short for log keys.
func itoa(i int) string { return strconv.Itoa(i) }
