package netnsboot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrUnit is wrapped by the errors of units the stand-in cannot run.
var ErrUnit = errors.New("unit not supported by the systemd stand-in")

// unit is what the systemd stand-in runs of a service unit: the keys of
// [Service] below; every other key and section is ignored (the stand-in
// has no targets, dependencies or cgroups).
type unit struct {
	// name is the unit's name, "cloudml-agent.service".
	name string
	// execStart is ExecStart's argv: words split at white space, with
	// systemd's prefixes (-, @, :, +, !) dropped. Quotes, variables and
	// specifiers (%) are refused: the stand-in does not expand them.
	execStart []string
	// restart is Restart=: "no" (the default), "always" or "on-failure".
	restart string
	// restartDelay is RestartSec= (default 100ms, as systemd's).
	restartDelay time.Duration
	// preventExit is RestartPreventExitStatus=: exit statuses that end
	// the service however Restart= reads.
	preventExit []int
}

// defaultRestartDelay is systemd's RestartSec default.
const defaultRestartDelay = 100 * time.Millisecond

// parseUnit reads a unit file.
func parseUnit(name string, data []byte) (unit, error) {
	u := unit{name: name, restart: "no", restartDelay: defaultRestartDelay}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrUnit, name, fmt.Sprintf(format, a...))
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, "\\"):
			return unit{}, bad("line %d: continued lines are not supported", n)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return unit{}, bad("line %d: not key=value: %q", n, line)
		}
		if section != "Service" {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "ExecStart":
			if strings.ContainsAny(value, "\"'$%\\") {
				return unit{}, bad("ExecStart %q: quotes, variables and specifiers are not supported", value)
			}
			value = strings.TrimLeft(value, "-@:+!")
			u.execStart = strings.Fields(value)
		case "Restart":
			switch value {
			case "no", "always", "on-failure":
				u.restart = value
			default:
				return unit{}, bad("Restart=%s: want no, always or on-failure", value)
			}
		case "RestartSec":
			d, err := parseSec(value)
			if err != nil {
				return unit{}, bad("RestartSec=%s: %v", value, err)
			}
			u.restartDelay = d
		case "RestartPreventExitStatus":
			for _, f := range strings.Fields(value) {
				code, err := strconv.Atoi(f)
				if err != nil || code < 0 || code > 255 {
					return unit{}, bad("RestartPreventExitStatus=%s: %q is not an exit status (signal names are not supported)", value, f)
				}
				u.preventExit = append(u.preventExit, code)
			}
		case "Type":
			if value != "simple" && value != "exec" {
				return unit{}, bad("Type=%s: only simple and exec are supported", value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return unit{}, bad("%v", err)
	}
	if len(u.execStart) == 0 || !strings.HasPrefix(u.execStart[0], "/") {
		return unit{}, bad("no ExecStart with an absolute program")
	}
	return u, nil
}

// parseSec reads a systemd time span of one unit: "5" (seconds), "2.5s",
// "500ms", "1min".
func parseSec(s string) (time.Duration, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 {
		return time.Duration(v * float64(time.Second)), nil
	}
	if v, ok := strings.CutSuffix(s, "min"); ok {
		s = v + "m"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("not a time span")
	}
	return d, nil
}

// restarts says whether the service is started again after its main
// process ended with code (-1: killed by a signal).
func (u unit) restarts(code int) bool {
	if code >= 0 && slices.Contains(u.preventExit, code) {
		return false
	}
	switch u.restart {
	case "always":
		return true
	case "on-failure":
		return code != 0
	}
	return false
}
