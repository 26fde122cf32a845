package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestContainerTaskCannotReadAgentSecrets is issue 8's acceptance test on
// the Docker runtime. An agent's work dir holds its secrets dir (key and
// credential) beside the staged code, and the agent's environment holds its
// token; a task container made from ServiceSpec, started by the host's
// dockerd, searches for all three and finds none: its environment is the
// spec's alone, and its only mounts are the staged code and the Octave dir
// (read-only) and its output volume.
//
// The host daemon is not a swarm manager (and the tests must not make it
// one), so the container is created from the service's ContainerSpec the
// way the Engine's swarm executor does (daemon/cluster/executor/container:
// Env, Dir, Command, Labels and Mounts passed as they are, {{.Node.ID}}
// expanded to the node's id).
func TestContainerTaskCannotReadAgentSecrets(t *testing.T) {
	d := testutil.HostDocker(t)
	rootfs, err := netns.BusyboxRootfs()
	testutil.NeedSystem(t, "a static busybox (apt-get install busybox-static)", err)
	image, _ := testutil.ImportImage(t, d, "cloudml-test/busybox", rootfs, "ENV PATH=/bin")

	tag := make([]byte, 8)
	rand.Read(tag)
	token, key, cred := "TOKEN-"+hex.EncodeToString(tag), "KEY-"+hex.EncodeToString(tag), "CRED-"+hex.EncodeToString(tag)
	t.Setenv("CLOUDML_TOKEN", token) // the agent's environment

	// The agent's files, as agent/ lays them out.
	work, swarmRoot, nodeID := t.TempDir(), t.TempDir(), "node"+hex.EncodeToString(tag)
	secrets := filepath.Join(work, "identity")
	entry := filepath.Join(work, "cache", "sha256-code")
	job := "peek-" + hex.EncodeToString(tag[:3])
	files := map[string]string{
		filepath.Join(secrets, "node.key"):        key,
		filepath.Join(secrets, "identity.json"):   `{"node_credential":"` + cred + `"}`,
		filepath.Join(entry, "train.sh"):          "echo code-ran\n",
		filepath.Join(work, "octave", "octaverc"): "1;\n",
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(work, JobDir(job)), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(work, JobDir(job), "code"): entry,
		filepath.Join(swarmRoot, nodeID):         work,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	asg := &cloudmlv1.Assignment{
		Ref: &cloudmlv1.TaskRef{JobId: job, TaskIndex: 0, Attempt: 1}, TaskCount: 1, Image: image,
		Code: &cloudmlv1.Source{Url: "gs://b/code.tar.gz"}, Env: map[string]string{"JOB_VAR": "yes"},
		Command: []string{"sh", "-c", `
env | sort
echo "token=[$CLOUDML_TOKEN]"
find / \( -path /proc -o -path /sys \) -prune -o \( -name node.key -o -name identity.json -o -name identity \) -print 2>/dev/null | sed 's/^/FOUND /'
for f in /cloudml/code/../identity/node.key /cloudml/octave/../identity/node.key; do cat "$f" 2>/dev/null && echo "READ $f"; done
for d in /*; do case $d in /proc|/sys|/dev) ;; *) grep -rl "` + key + `" "$d" 2>/dev/null | sed 's/^/GREP /';; esac; done
echo searched
sh ./train.sh
echo x > /cloudml/code/x 2>/dev/null && echo WROTE-CODE
echo x > "$CLOUDML_OUTPUT_DIR/out" && echo WROTE-OUTPUT`},
	}
	// The agent's Octave mount and variable (agent/container_cmds.go).
	spec, err := ServiceSpec(asg, SpecOptions{SwarmRoot: swarmRoot,
		Mounts: []mount.Mount{{Type: mount.TypeBind, ReadOnly: true, Target: "/cloudml/octave", Source: filepath.Join(swarmRoot, "{{.Node.ID}}", "octave")}},
		Env:    []string{"OCTAVE_SITE_INITFILE=/cloudml/octave/octaverc"}})
	if err != nil {
		t.Fatal(err)
	}
	stdout, mounts := runAsSwarmWould(t, d, spec, nodeID)
	t.Logf("container stdout:\n%s", stdout)

	for name, secret := range map[string]string{"token": token, "key": key, "credential": cred} {
		if strings.Contains(stdout, secret) {
			t.Errorf("the container read the agent's %s", name)
		}
	}
	for _, m := range []string{"FOUND ", "READ ", "GREP ", "WROTE-CODE"} {
		if strings.Contains(stdout, m) {
			t.Errorf("the container printed %q", m)
		}
	}
	for _, m := range []string{"token=[]", "JOB_VAR=yes", "searched", "code-ran", "WROTE-OUTPUT"} {
		if !strings.Contains(stdout, m) {
			t.Errorf("the container did not print %q", m)
		}
	}
	// Its whole environment is the spec's, nothing of the agent's.
	var env []string
	for _, line := range strings.Split(stdout, "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && k != "token" && !strings.Contains(k, " ") {
			env = append(env, k)
		}
	}
	allowed := map[string]bool{"HOME": true, "PATH": true, "PWD": true, "SHLVL": true, "HOSTNAME": true, "JOB_VAR": true, "OCTAVE_SITE_INITFILE": true}
	for _, k := range env {
		if !allowed[k] && !strings.HasPrefix(k, "CLOUDML_") {
			t.Errorf("the container has %s in its environment, which the spec does not set", k)
		}
	}
	// Its mounts: the staged code and the Octave dir read-only, its output
	// volume, and nothing else of the node's.
	var got []string
	for _, m := range mounts {
		src, err := filepath.EvalSymlinks(m.Source) // what the daemon bound
		if m.Type == mount.TypeVolume {
			src, err = "volume "+m.Name, nil
		}
		if err != nil {
			t.Errorf("mount source %s: %v", m.Source, err)
		}
		got = append(got, m.Destination+" <- "+src+" rw="+map[bool]string{true: "true", false: "false"}[m.RW])
	}
	want := []string{
		CodeDir + " <- " + entry + " rw=false",
		"/cloudml/octave <- " + filepath.Join(work, "octave") + " rw=false",
		OutputDir + " <- volume " + Name(asg.GetRef()) + " rw=true",
	}
	if strings.Join(sortedCopy(got), "\n") != strings.Join(sortedCopy(want), "\n") {
		t.Errorf("container mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// runAsSwarmWould creates, starts and waits for the container of spec's
// task on node nodeID, and returns its output and mounts.
func runAsSwarmWould(t *testing.T, d *client.Client, spec swarm.ServiceSpec, nodeID string) (string, []container.MountPoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := spec.TaskTemplate.ContainerSpec
	var mounts []mount.Mount
	for _, m := range cs.Mounts {
		m.Source = strings.ReplaceAll(m.Source, "{{.Node.ID}}", nodeID)
		mounts = append(mounts, m)
	}
	// Without the spec's labels: they mark a CloudML task container, and an
	// agent another package's test runs on the same daemon then takes this
	// one for an orphan of its own and removes it before its logs are read
	// ("can not get logs from container which is dead or marked for
	// removal", seen once in a full run).
	created, err := d.ContainerCreate(ctx,
		&container.Config{Image: cs.Image, Cmd: cs.Command, Env: cs.Env, WorkingDir: cs.Dir},
		&container.HostConfig{Mounts: mounts}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		d.VolumeRemove(ctx, spec.Annotations.Name, true)
	})
	respC, errC := d.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := d.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-respC:
		if r.StatusCode != 0 {
			t.Errorf("container exited with %d", r.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := d.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out, errs bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errs, rc); err != nil {
		t.Fatal(err)
	}
	if errs.Len() > 0 {
		t.Logf("container stderr:\n%s", errs.String())
	}
	info, err := d.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), info.Mounts
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}
