package swarm

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// statusActive is real `ufw status` output (ufw 0.36.2, in a namespace).
const statusActive = `Status: active

To                         Action      From
--                         ------      ----
2377/tcp                   ALLOW       10.9.0.0/24               
7946/udp                   ALLOW       Anywhere                  
4789/udp                   ALLOW       10.9.0.5                  
22/tcp                     DENY        10.9.0.0/24               
7946/udp (v6)              ALLOW       Anywhere (v6)             
`

func TestParseStatus(t *testing.T) {
	active, rules := parseStatus([]byte(statusActive))
	if !active {
		t.Error("active status read as inactive")
	}
	want := map[ruleKey]bool{
		"2377/tcp from 10.9.0.0/24": true,
		"7946/udp from Anywhere":    true,
		"4789/udp from 10.9.0.5":    true,
	}
	if diff := cmp.Diff(want, rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if active, _ := parseStatus([]byte("Status: inactive\n")); active {
		t.Error("inactive status read as active")
	}
}

// fakeUFW answers like ufw: status lists the rules added with allow. With
// chains, iptables answers whether ufw's chain is loaded (while active).
type fakeUFW struct {
	active bool
	chains bool
	rules  []string // "To From" pairs, as status lists them
	calls  []string
}

func (f *fakeUFW) run(_ context.Context, name string, args ...string) ([]byte, error) {
	if name == "iptables" && f.chains && strings.Join(args, " ") == "-L ufw-user-input -n" {
		f.calls = append(f.calls, "iptables "+strings.Join(args, " "))
		if f.active {
			return nil, nil
		}
		return []byte("iptables: No chain/target/match by that name.\n"), exec.Command("false").Run()
	}
	if name != "ufw" {
		return nil, fmt.Errorf("ran %s", name)
	}
	f.calls = append(f.calls, strings.Join(args, " "))
	switch {
	case len(args) == 1 && args[0] == "status":
		if !f.active {
			return []byte("Status: inactive\n"), nil
		}
		out := "Status: active\n\nTo                         Action      From\n--                         ------      ----\n"
		for _, r := range f.rules {
			to, from, _ := strings.Cut(r, " ")
			out += fmt.Sprintf("%-26s ALLOW       %s\n", to, from)
		}
		return []byte(out), nil
	case len(args) == 2 && args[0] == "allow":
		f.rules = append(f.rules, args[1]+" Anywhere")
	case len(args) == 9 && args[0] == "allow" && args[1] == "proto":
		f.rules = append(f.rules, args[8]+"/"+args[2]+" "+args[4])
	default:
		return []byte("ERROR: Invalid syntax"), errors.New("exit status 1")
	}
	return []byte("Rule added\n"), nil
}

func TestUFWActive(t *testing.T) {
	f := &fakeUFW{active: true}
	u := &UFW{Run: f.run}
	if ok, err := u.Active(t.Context()); err != nil || !ok {
		t.Errorf("Active = %v, %v; want true", ok, err)
	}
	f.active = false
	if ok, err := u.Active(t.Context()); err != nil || ok {
		t.Errorf("Active = %v, %v; want false", ok, err)
	}
	missing := &UFW{Run: func(context.Context, string, ...string) ([]byte, error) {
		return nil, &exec.Error{Name: "ufw", Err: exec.ErrNotFound}
	}}
	if ok, err := missing.Active(t.Context()); err != nil || ok {
		t.Errorf("without ufw: Active = %v, %v; want false, nil", ok, err)
	}
	denied := &UFW{Run: func(context.Context, string, ...string) ([]byte, error) {
		return []byte("ERROR: You need to be root to run this script\n"), errors.New("exit status 1")
	}}
	if _, err := denied.Active(t.Context()); err == nil || !strings.Contains(err.Error(), "You need to be root") {
		t.Errorf("non-root: err = %v, want ufw's own message", err)
	}
}

func TestUFWActiveAsksIptablesBeforeStartingUFW(t *testing.T) {
	f := &fakeUFW{chains: true}
	u := &UFW{Run: f.run}
	if ok, err := u.Active(t.Context()); err != nil || ok {
		t.Errorf("inactive: Active = %v, %v; want false", ok, err)
	}
	if diff := cmp.Diff([]string{"iptables -L ufw-user-input -n"}, f.calls); diff != "" {
		t.Errorf("inactive: commands (-want +got):\n%s", diff)
	}
	f.active, f.calls = true, nil
	if ok, err := u.Active(t.Context()); err != nil || !ok {
		t.Errorf("active: Active = %v, %v; want true", ok, err)
	}
	if diff := cmp.Diff([]string{"iptables -L ufw-user-input -n", "status"}, f.calls); diff != "" {
		t.Errorf("active: commands (-want +got):\n%s", diff)
	}
}

func TestUFWAllowCommandsAndIdempotence(t *testing.T) {
	f := &fakeUFW{active: true}
	u := &UFW{Run: f.run}
	rules := append(SwarmPorts(nil), Rule{Port: 2377, Proto: "tcp", From: "10.0.0.7/24"}, Rule{Port: 4789, Proto: "udp", From: "10.0.0.5/32"})
	if err := u.Allow(t.Context(), rules); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"status",
		"allow 2377/tcp",
		"allow 7946/tcp",
		"allow 7946/udp",
		"allow 4789/udp",
		"allow proto tcp from 10.0.0.0/24 to any port 2377",
		"allow proto udp from 10.0.0.5 to any port 4789",
	}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	f.calls = nil
	if err := u.Allow(t.Context(), rules); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"status"}, f.calls); diff != "" {
		t.Errorf("second Allow (-want +got):\n%s", diff)
	}
}

func TestUFWRejectsBadRules(t *testing.T) {
	f := &fakeUFW{active: true}
	u := &UFW{Run: f.run}
	for _, r := range []Rule{{Port: 0, Proto: "tcp"}, {Port: 2377, Proto: "icmp"}, {Port: 2377, Proto: "tcp", From: "any; rm -rf /"}} {
		if err := u.Allow(t.Context(), []Rule{r}); !errors.Is(err, ErrBadRule) {
			t.Errorf("Allow(%+v) = %v, want ErrBadRule", r, err)
		}
	}
	if len(f.rules) != 0 {
		t.Errorf("bad rules reached ufw: %v", f.rules)
	}
}
