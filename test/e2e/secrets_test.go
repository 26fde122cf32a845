package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/pki"
)

// Every e2e cluster checks, when it stops, that its coordinator's log (with
// its agents' logs in it, at debug level) and the command lines of every
// process it ran hold no secret: no join token, no PEM key, no key of the
// CA, the server, the admin or a node. secretValues adds what a test
// planted (a job's secret env value).

// tokenPattern matches a join token, or its secret after its id.
var tokenPattern = regexp.MustCompile(`CMLTKN-1-|[0-9a-f]{12}-[0-9a-f]{32}`)

// checkNoSecrets fails the test if the cluster's log holds a secret.
func (c *cluster) checkNoSecrets() {
	c.t.Helper()
	log := c.log.String()
	if len(log) == 0 {
		c.t.Errorf("the coordinator logged nothing: the secrets check would prove nothing")
	}
	if m := tokenPattern.FindString(log); m != "" {
		c.t.Errorf("the coordinator's log holds a join token (%q)", m)
	}
	if strings.Contains(log, "PRIVATE KEY") {
		c.t.Errorf("the coordinator's log holds a PEM private key")
	}
	for name, secret := range c.keyMaterial() {
		if strings.Contains(log, secret) {
			c.t.Errorf("the coordinator's log holds %s", name)
		}
	}
	for _, v := range c.secretValues {
		if strings.Contains(log, v) {
			c.t.Errorf("the coordinator's log holds the job's secret env value")
		}
	}
}

// keyMaterial is the first base64 line of every private key the cluster
// made: the CA's, the server's, the admin credential's, each node's.
func (c *cluster) keyMaterial() map[string]string {
	out := map[string]string{}
	add := func(name, pemText string) {
		_, body, ok := strings.Cut(pemText, "-----BEGIN PRIVATE KEY-----")
		if !ok {
			return
		}
		if line := strings.TrimSpace(strings.SplitN(strings.TrimSpace(body), "\n", 2)[0]); len(line) > 20 {
			out[name] = line
		}
	}
	state := filepath.Join(c.home, "state")
	for _, f := range []string{filepath.Join(state, "pki", pki.CAKeyFile), filepath.Join(state, "pki", "server.key")} {
		data, _ := os.ReadFile(f)
		add(f, string(data))
	}
	if cred, err := pki.LoadCredential(filepath.Join(c.home, "config")); err == nil {
		add("the admin credential's key", cred.Key)
	}
	nodes, _ := filepath.Glob(filepath.Join(state, "nodes", "*", "identity", "node.pem"))
	for _, f := range nodes {
		data, _ := os.ReadFile(f)
		add(f, string(data))
	}
	return out
}

// argvTokens lists the processes whose command line holds a join token.
func argvTokens() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && tokenPattern.Match(data) {
			found = append(found, strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	return found
}

// TestSecretsStayOutOfSight runs a job with a secret env value on real
// processes and checks where it may and may not appear: its submitter sees
// it, another client sees "<redacted>", no process's argv holds a token,
// and (when the cluster stops) no log holds it or any key.
func TestSecretsStayOutOfSight(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	b := make([]byte, 16)
	rand.Read(b)
	secret := "s3cr3t-" + hex.EncodeToString(b)
	c.secretValues = append(c.secretValues, secret)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("echo task $CLOUDML_TASK_INDEX uses its key of ${#API_KEY} bytes\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	job := strings.TrimSpace(c.mustClient("submit", "--name", "secret", "--code", dir, "--env", "API_KEY="+secret,
		"--param", "x=1,2", "--", "sh", "run.sh"))
	if r := c.client("logs", "-f", job); r.Code != 0 || !strings.Contains(r.Stdout, "uses its key of 39 bytes") {
		t.Fatalf("logs -f: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if found := argvTokens(); len(found) > 0 {
		t.Errorf("processes with a join token in their argv: %q", found)
	}
	var mine struct {
		Spec struct {
			Env map[string]string `json:"env"`
		} `json:"spec"`
		Owner string `json:"owner"`
	}
	c.jsonOf(&mine, "status", job)
	if mine.Spec.Env["API_KEY"] != secret || mine.Owner != "admin" {
		t.Errorf("the submitter sees env %v, owner %q; want its secret and owner admin", mine.Spec.Env, mine.Owner)
	}
	teammate := filepath.Join(t.TempDir(), "bob.config")
	c.mustClient("credential", "create", "bob", "--file", teammate)
	r := c.client("--config", teammate, "-o", "json", "status", job)
	if r.Code != 0 || strings.Contains(r.Stdout, secret) || !strings.Contains(r.Stdout, `"API_KEY": "<redacted>"`) {
		t.Errorf("another credential's status: exit %d, want API_KEY <redacted>:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.client("--config", teammate, "-o", "json", "list")
	if r.Code != 0 || strings.Contains(r.Stdout, secret) {
		t.Errorf("another credential's list shows the secret: exit %d\n%s", r.Code, r.Stdout)
	}
	if n := len(c.keyMaterial()); n < 5 {
		t.Errorf("found %d private keys to look for (CA, server, admin, 2 nodes), want 5", n)
	}
	var l struct{ Jobs []json.RawMessage }
	if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil || len(l.Jobs) != 1 {
		t.Errorf("another credential's list = %s (%v), want the job", r.Stdout, err)
	}
}
