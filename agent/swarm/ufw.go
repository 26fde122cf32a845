package swarm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// ErrBadRule is wrapped when a Rule cannot be expressed safely.
var ErrBadRule = errors.New("invalid firewall rule")

// UFW is the Firewall of Debian and Ubuntu hosts, driven through the ufw
// command (it needs root). A host without ufw has no active firewall.
type UFW struct {
	// Run runs a command and returns its combined output; nil runs it on
	// this host. Tests run it inside a network namespace or fake it.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

var _ Firewall = (*UFW)(nil)

// runHost runs name on this host; a missing binary wraps exec.ErrNotFound.
func runHost(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, path, args...).CombinedOutput()
}

func (u *UFW) run(ctx context.Context, args ...string) ([]byte, error) {
	run := u.Run
	if run == nil {
		run = runHost
	}
	out, err := run(ctx, "ufw", args...)
	if err != nil {
		return out, fmt.Errorf("ufw %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Active reports what `ufw status` would: false when ufw is not
// installed or its rules are not loaded. It first asks iptables for ufw's
// input chain, which is what `ufw status` checks before anything else
// (exit status 1: not loaded, inactive), and runs `ufw status` itself only
// when the chain is there or iptables cannot say. ufw is a Python program
// that takes 0.1-0.3 s to start, and an inactive ufw (Ubuntu's default)
// is the common case on the swarm's critical path.
func (u *UFW) Active(ctx context.Context) (bool, error) {
	if loaded, known := u.chainLoaded(ctx); known && !loaded {
		return false, nil
	}
	out, err := u.run(ctx, "status")
	if errors.Is(err, exec.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	active, _ := parseStatus(out)
	return active, nil
}

// chainLoaded runs `iptables -L ufw-user-input -n`, as `ufw status` does
// first: known is false when iptables is missing or fails otherwise than
// with exit status 1 (no such chain).
func (u *UFW) chainLoaded(ctx context.Context) (loaded, known bool) {
	run := u.Run
	if run == nil {
		run = runHost
	}
	_, err := run(ctx, "iptables", "-L", "ufw-user-input", "-n")
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, true
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return false, true
	}
	return false, false
}

// Allow adds the rules that `ufw status` does not list yet.
func (u *UFW) Allow(ctx context.Context, rules []Rule) error {
	out, err := u.run(ctx, "status")
	if err != nil {
		return err
	}
	_, have := parseStatus(out)
	for _, r := range rules {
		args, key, err := allowArgs(r)
		if err != nil {
			return err
		}
		if have[key] {
			continue
		}
		if _, err := u.run(ctx, args...); err != nil {
			return err
		}
		have[key] = true
	}
	return nil
}

// ruleKey is a rule as `ufw status` shows it: "2377/tcp from 10.0.0.0/24".
type ruleKey string

func keyOf(port int, proto, from string) ruleKey {
	if from == "" {
		from = "Anywhere"
	}
	return ruleKey(fmt.Sprintf("%d/%s from %s", port, proto, from))
}

// allowArgs validates r and returns the ufw arguments that add it.
func allowArgs(r Rule) ([]string, ruleKey, error) {
	if r.Port <= 0 || r.Port > 65535 {
		return nil, "", fmt.Errorf("%w: port %d", ErrBadRule, r.Port)
	}
	if r.Proto != "tcp" && r.Proto != "udp" {
		return nil, "", fmt.Errorf("%w: protocol %q (want tcp or udp)", ErrBadRule, r.Proto)
	}
	port := strconv.Itoa(r.Port)
	if r.From == "" {
		return []string{"allow", port + "/" + r.Proto}, keyOf(r.Port, r.Proto, ""), nil
	}
	from, err := normalizeSource(r.From)
	if err != nil {
		return nil, "", err
	}
	args := []string{"allow", "proto", r.Proto, "from", from, "to", "any", "port", port}
	return args, keyOf(r.Port, r.Proto, from), nil
}

// normalizeSource writes a CIDR or address the way ufw lists it: the
// network address, and a single host without its prefix length.
func normalizeSource(s string) (string, error) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.String(), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", fmt.Errorf("%w: source %q is not a CIDR or an address", ErrBadRule, s)
	}
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	return p.String(), nil
}

// parseStatus reads `ufw status` output: whether ufw is active and the
// ALLOW rules it lists (IPv6 duplicates of "Anywhere" rules skipped).
func parseStatus(out []byte) (bool, map[ruleKey]bool) {
	active := false
	rules := map[ruleKey]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Status:"); ok {
			active = strings.TrimSpace(v) == "active"
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[1] == "(v6)" {
			continue
		}
		to, action, from := f[0], f[1], f[len(f)-1]
		if action != "ALLOW" || from == "(v6)" {
			continue
		}
		port, proto, ok := strings.Cut(to, "/")
		n, err := strconv.Atoi(port)
		if !ok || err != nil {
			continue
		}
		rules[keyOf(n, proto, from)] = true
	}
	return active, rules
}
