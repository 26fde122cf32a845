package netnsboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
)

// systemctlScript is the droplet's systemctl: it hands its arguments to
// the harness over the droplet's socket (path sock) and prints what the
// harness answers: the exit status, an error for stderr, then stdout.
func systemctlScript(sock string) string {
	return `#!/bin/sh
# systemctl of a dofake droplet (internal/dofake/netnsboot): the harness
# runs the droplet's units and answers over ` + sock + `.
# The answer is the exit status, a line; an error, a line; the output.
# Split with the shell's own expansions: one process (curl) per call.
resp=$(printf '%s\n' "$@" | curl --silent --show-error --fail --unix-socket '` + sock + `' \
  --data-binary @- http://droplet/systemctl && echo .) || exit 1
resp=${resp%.}
nl='
'
code=${resp%%"$nl"*}
resp=${resp#*"$nl"}
err=${resp%%"$nl"*}
printf '%s' "${resp#*"$nl"}"
[ -z "$err" ] || echo "systemctl: $err" >&2
exit "$code"
`
}

// aptScript is the droplet's apt-get: a droplet must not install packages
// on the host; it fails as apt-get does when it cannot.
const aptScript = `#!/bin/sh
echo "apt-get: not available on a dofake droplet (internal/dofake/netnsboot): the host must have what the user-data would install" >&2
exit 100
`

// systemctl answers one run of the stand-in: its arguments, one a line.
func (m *machine) systemctl(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	args := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	m.log.Debug("systemctl", "args", args)
	out, code, err := m.runSystemctl(r.Context(), args)
	msg := ""
	if err != nil {
		m.log.Warn("systemctl failed", "args", args, "exit_status", code, "error", err)
		msg = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	fmt.Fprintf(w, "%d\n%s\n%s", code, msg, out)
}

// errInactive is is-active's answer for a unit that is not active: exit
// status 3, as systemctl's.
var errInactive = errors.New("inactive")

// runSystemctl does what systemctl would with args: daemon-reload,
// enable/disable [--now], start, stop, restart and is-active of service
// units in /etc/systemd/system. It returns the output and the exit
// status: 0, 3 for is-active of a unit that is not, 1 for any error.
func (m *machine) runSystemctl(ctx context.Context, args []string) (string, int, error) {
	out, err := m.systemctlDo(ctx, args)
	switch {
	case err == nil:
		return out, 0, nil
	case errors.Is(err, errInactive):
		return out, 3, nil
	}
	return out, 1, err
}

func (m *machine) systemctlDo(ctx context.Context, args []string) (string, error) {
	now := false
	var words []string
	for _, a := range args {
		switch {
		case a == "--now":
			now = true
		case a == "-q" || a == "--quiet" || a == "--no-block" || a == "--no-pager" || a == "--system":
		case strings.HasPrefix(a, "-"):
			return "", fmt.Errorf("option %s is not supported by the stand-in", a)
		case a != "":
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		return "", errors.New("no command")
	}
	cmd, names := words[0], words[1:]
	for i, n := range names {
		if !strings.Contains(n, ".") {
			n += ".service"
		}
		if strings.Contains(n, "/") || !strings.HasSuffix(n, ".service") {
			return "", fmt.Errorf("unit %q: only service units in %s are supported", n, unitDir)
		}
		names[i] = n
	}
	if cmd != "daemon-reload" && len(names) == 0 {
		return "", fmt.Errorf("%s: no unit named", cmd)
	}
	var out strings.Builder
	for _, n := range names {
		var err error
		switch cmd {
		case "enable", "disable":
			m.mu.Lock()
			m.enabled[n] = cmd == "enable"
			m.mu.Unlock()
			if now && cmd == "enable" {
				err = m.startUnit(ctx, n)
			} else if now {
				m.stopUnit(n)
			}
		case "start":
			err = m.startUnit(ctx, n)
		case "stop":
			m.stopUnit(n)
		case "restart":
			m.stopUnit(n)
			err = m.startUnit(ctx, n)
		case "is-active":
			st := m.unitState(n)
			out.WriteString(st + "\n")
			if st != "active" {
				err = errInactive
			}
		default:
			err = fmt.Errorf("command %q is not supported by the stand-in", cmd)
		}
		if err != nil {
			return out.String(), err
		}
	}
	if cmd == "daemon-reload" && len(names) > 0 {
		return "", errors.New("daemon-reload takes no unit")
	}
	return out.String(), nil
}

// startUnit reads unit name from the droplet and starts it, unless it
// runs already.
func (m *machine) startUnit(ctx context.Context, name string) error {
	m.mu.Lock()
	s := m.units[name]
	m.mu.Unlock()
	if s != nil && !s.ended() {
		return nil
	}
	data, err := m.readFile(ctx, path.Join(unitDir, name))
	if err != nil {
		return fmt.Errorf("unit %s not found: %w", name, err)
	}
	u, err := parseUnit(name, []byte(data))
	if err != nil {
		return err
	}
	s = &service{m: m, u: u, out: newLineWriter(&m.b.console, m.name+" "+name+": "),
		stopc: make(chan struct{}), done: make(chan struct{}), state: "activating"}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return errors.New("the droplet is halting")
	}
	if old := m.units[name]; old != nil && !old.ended() {
		return nil // started meanwhile
	}
	m.units[name] = s
	started := make(chan struct{})
	go s.run(started)
	<-started
	return nil
}

// stopUnit stops unit name and waits until it ended.
func (m *machine) stopUnit(name string) {
	m.mu.Lock()
	s := m.units[name]
	m.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// unitState is "active", "activating", "inactive" or "failed".
func (m *machine) unitState(name string) string {
	m.mu.Lock()
	s := m.units[name]
	m.mu.Unlock()
	if s == nil {
		return "inactive"
	}
	st, _, _ := s.status()
	return st
}

// service is a started unit: its main process, run again as the unit's
// Restart= says until it is stopped.
type service struct {
	m     *machine
	u     unit
	out   *lineWriter
	stopc chan struct{} // closed by stop
	once  sync.Once
	done  chan struct{} // closed when run returned

	mu     sync.Mutex // protects state, starts, last
	state  string
	starts int
	last   string // how the last run ended
}

func (s *service) set(state, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
	if last != "" {
		s.last = last
	}
}

// status returns the state, how many times the main process started and
// how its last run ended.
func (s *service) status() (string, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.starts, s.last
}

func (s *service) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop ends the service (SIGTERM to the main process, SIGKILL after
// Config.StopTimeout) and waits for it.
func (s *service) stop() {
	s.once.Do(func() { close(s.stopc) })
	<-s.done
}

// run supervises the main process; started is closed once the first
// start was tried.
func (s *service) run(started chan struct{}) {
	defer close(s.done)
	first := true
	signalStarted := func() {
		if first {
			first = false
			close(started)
		}
	}
	defer signalStarted()
	log := s.m.log.With("unit", s.u.name)
	for {
		cmd := s.m.command(append([]string{"PATH=" + systemPath, "LANG=C.UTF-8"}, s.m.b.defaultEnvironment()...), s.u.execStart...)
		cmd.Stdout, cmd.Stderr = s.out, s.out
		waited, err := start(cmd)
		if err != nil {
			log.Error("unit failed to start", "error", err)
			s.set("failed", "start: "+err.Error())
			return
		}
		s.mu.Lock()
		s.state, s.starts = "active", s.starts+1
		s.mu.Unlock()
		log.Debug("unit started", "pid", cmd.Process.Pid)
		signalStarted()
		exited := make(chan struct{})
		go func() {
			<-waited
			close(exited)
		}()
		stopping := false
		select {
		case <-exited:
		case <-s.stopc:
			stopping = true
			cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(s.m.b.cfg.StopTimeout)
			select {
			case <-exited:
			case <-t.C:
				log.Warn("unit did not stop after SIGTERM; killing it", "timeout", s.m.b.cfg.StopTimeout)
				cmd.Process.Kill()
				<-exited
			}
			t.Stop()
		}
		s.out.Flush()
		code := cmd.ProcessState.ExitCode()
		how := cmd.ProcessState.String()
		if stopping {
			s.set("inactive", how)
			log.Debug("unit stopped", "status", how)
			return
		}
		if !s.u.restarts(code) {
			state := "inactive"
			if code != 0 {
				state = "failed"
			}
			s.set(state, how)
			log.Info("unit ended", "status", how, "state", state)
			return
		}
		s.set("activating", how)
		log.Info("unit exited; restarting", "status", how, "after", s.u.restartDelay)
		t := time.NewTimer(s.u.restartDelay)
		select {
		case <-t.C:
		case <-s.stopc:
			t.Stop()
			s.set("inactive", "")
			return
		}
	}
}
