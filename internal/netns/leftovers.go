package netns

import (
	"context"
	"os"
	"regexp"
	"strings"
)

// Leftovers describes whatever of a cluster named prefix still exists on
// this machine: namespaces, links, iptables rules, processes, mounts under
// workDir or the run dir, and the state file. Empty means Close or Cleanup
// left nothing behind. Tests use it.
func Leftovers(ctx context.Context, prefix, workDir string) []string {
	var out []string
	for _, ns := range namespaces(prefix) {
		out = append(out, "namespace "+ns)
	}
	if list, err := run(ctx, "ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(list, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-n") {
				out = append(out, "ip netns "+f[0])
			}
		}
	}
	linkRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(br|h[0-9]+|p[0-9]+)$`)
	for _, l := range links(ctx) {
		if linkRE.MatchString(l) {
			out = append(out, "link "+l)
		}
	}
	for _, r := range forwardRules(ctx, prefix) {
		out = append(out, "iptables -A FORWARD "+strings.Join(r, " "))
	}
	marks := []string{runDir(prefix) + "/"}
	if workDir != "" {
		marks = append(marks, workDir+"/")
	}
	for _, p := range Procs() {
		if p.PID == os.Getpid() || p.State == 'Z' {
			continue
		}
		for _, m := range marks {
			if strings.Contains(p.Cmdline, m) {
				out = append(out, "process "+itoa(p.PID)+" "+p.Cmdline)
				break
			}
		}
	}
	dirs := []string{runDir(prefix)}
	if workDir != "" {
		dirs = append(dirs, workDir)
	}
	for _, mp := range mountsUnder(dirs...) {
		out = append(out, "mount "+mp)
	}
	if _, err := os.Stat(statePath(prefix)); err == nil {
		out = append(out, "state file "+statePath(prefix))
	}
	return out
}
