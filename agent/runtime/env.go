package runtime

import "strings"

// HostEnvNames are the variables of the agent's own environment that reach
// a task; every other variable of the agent (CLOUDML_JOIN_TOKEN, cloud and
// bucket credentials, proxies that may carry a password) never does. HOME
// and TMPDIR are not inherited: each attempt gets its own. A job that needs
// more sets it in its env.
var HostEnvNames = []string{"PATH", "LANG", "LANGUAGE", "TZ"}

// HostEnvPrefixes are prefixes of further inherited names: the locale
// categories LC_ALL, LC_CTYPE, LC_NUMERIC and the rest.
var HostEnvPrefixes = []string{"LC_"}

// HostEnv returns the entries of env ("KEY=value") a task may inherit from
// the agent, in their order: HostEnvNames and HostEnvPrefixes.
func HostEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if ok && inherited(k) {
			out = append(out, kv)
		}
	}
	return out
}

func inherited(name string) bool {
	for _, n := range HostEnvNames {
		if name == n {
			return true
		}
	}
	for _, p := range HostEnvPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}
