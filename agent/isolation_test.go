package agent

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestTaskCannotReadAgentSecrets is issue 8's acceptance test on the
// process runtime, through the whole agent: a task that tries to read the
// agent's token (its environment, /proc), node key and credential (the
// secrets dir), directly or by leaving symlinks among its outputs for the
// agent to upload, gets none of them into its logs, its results or its
// report. As root the task runs as nobody; otherwise under Landlock.
func TestTaskCannotReadAgentSecrets(t *testing.T) {
	tag := make([]byte, 8)
	rand.Read(tag)
	key := "KEY-" + hex.EncodeToString(tag)
	var work, token string
	s := newMemSetup(t, func(c *Config) {
		work, token = c.WorkDir, c.JoinToken
		c.Env = append(os.Environ(), pki.JoinTokenEnv+"="+token, "GOOGLE_APPLICATION_CREDENTIALS=/root/key.json")
	})
	f := s.f
	f.wait(t, "a session", func() bool { return len(f.sessionReqs) == 1 })
	secrets := SecretsDir(work)
	if err := os.WriteFile(filepath.Join(secrets, "node.key"), []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	nodePEM, err := os.ReadFile(filepath.Join(secrets, NodeFile))
	if err != nil {
		t.Fatal(err)
	}
	// The credential is the node's private key: its base64 body.
	_, keyPart, _ := strings.Cut(string(nodePEM), "-----BEGIN PRIVATE KEY-----\n")
	credential, _, _ := strings.Cut(keyPart, "\n")
	if len(credential) < 32 {
		t.Fatalf("%s holds no private key:\n%s", NodeFile, nodePEM)
	}

	rf := ref("peek", 0, 1)
	asg := s.asg(rf, "sh", "-c", `
for f in "$S/node.key" "$S/node.pem" "$S/ca.crt"; do cat "$f" && echo "READ $f"; done
ls "$S" && echo LISTED
tr '\0' '\n' < /proc/$PPID/environ | grep -i token && echo ENVIRON
env | sort
ln -s "$S/node.key" "$CLOUDML_OUTPUT_DIR/node.key"
ln -s "$S/node.pem" "$CLOUDML_OUTPUT_DIR/metrics.json"
ln -s "$S" "$CLOUDML_OUTPUT_DIR/secrets"
id
echo done`)
	asg.Env = map[string]string{"S": secrets}
	f.assign(t, asg)
	end := f.waitFinal(t, rf)
	stdout, stderr, _ := f.logText(rf)
	t.Logf("task stdout:\n%s\ntask stderr:\n%s\nreport: %v", stdout, stderr, end)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Errorf("end = %v, want SUCCEEDED", end.GetState())
	}
	everything := stdout + stderr + end.String()
	for _, k := range s.b.Keys("") {
		data, _ := s.b.Get(k)
		everything += k + "\n" + string(data)
	}
	for name, secret := range map[string]string{"token": token, "key": key, "credential": credential} {
		if strings.Contains(everything, secret) {
			t.Errorf("the %s %q reached the task's logs, results or report", name, secret)
		}
	}
	for _, m := range []string{"READ ", "LISTED", "ENVIRON", "GOOGLE_APPLICATION_CREDENTIALS", pki.JoinTokenEnv} {
		if strings.Contains(stdout, m) {
			t.Errorf("the task printed %q", m)
		}
	}
	if !strings.Contains(stdout, "done") || !strings.Contains(stdout, "HOME="+filepath.Join(work, "attempts", "peek", "0", "1", "home")) {
		t.Errorf("the task did not run to its end with its own HOME")
	}
	if os.Geteuid() == 0 && !strings.Contains(stdout, "uid=65534") {
		t.Errorf("a root agent's task runs as %q, want nobody", stdout)
	}
	for _, w := range []string{"output node.key is not a regular file", "output metrics.json is not a regular file", "output secrets is not a regular file"} {
		if !strings.Contains(end.GetMessage(), w) {
			t.Errorf("report message %q does not warn %q", end.GetMessage(), w)
		}
	}
}
