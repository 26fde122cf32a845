package do

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

const octaveImage = "cloudml/octave:7"

// dropletPrice is dofake's s-2vcpu-4gb, the default size.
const dropletPrice = "$0.03571"

// machineJSON is a row of `cluster machines -o json`.
type machineJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	State    string `json:"state"`
	NodeID   string `json:"nodeId"`
	Hostname string `json:"hostname"`
	Role     string `json:"swarmRole"`
}

type nodeJSON struct {
	ID          string `json:"id"`
	Hostname    string `json:"hostname"`
	State       string `json:"state"`
	SwarmNodeID string `json:"swarmNodeId"`
	SwarmRole   string `json:"swarmRole"`
}

func (co *coordinator) machines() []machineJSON {
	co.t.Helper()
	var l struct {
		Machines []machineJSON `json:"machines"`
	}
	if err := json.Unmarshal([]byte(co.must("-o", "json", "cluster", "machines")), &l); err != nil {
		co.t.Fatal(err)
	}
	return l.Machines
}

func (co *coordinator) nodes() []nodeJSON {
	co.t.Helper()
	var l struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(co.must("-o", "json", "cluster", "nodes")), &l); err != nil {
		co.t.Fatal(err)
	}
	return l.Nodes
}

// hostImage returns the id of ref in the host's Docker daemon, where
// images/octave/build.sh (run by .ci/run) puts it.
func hostImage(t *testing.T, ref string) string {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	var id string
	if err == nil {
		defer cli.Close()
		var inspect image.InspectResponse
		inspect, err = cli.ImageInspect(context.Background(), ref)
		id = inspect.ID
	}
	testutil.NeedSystem(t, "the "+ref+" image in the host's Docker daemon (run images/octave/build.sh)", err)
	return id
}

// poolDocker returns clients of the pool's node daemons.
func (c *cloud) poolDocker(t *testing.T, nodes int) []*client.Client {
	t.Helper()
	var out []*client.Client
	for i := range nodes {
		cli, err := client.NewClientWithOpts(client.WithHost(netns.DockerHost(c.name, i)), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		out = append(out, cli)
	}
	return out
}

// TestDigitalOcean is the DigitalOcean path from a token to results, on
// one cluster of 2 droplets: cluster up with progress and cost, the swarm
// formed from the droplets, the linreg Octave sweep with the image pushed
// from this machine's Docker and the results in the bucket, cluster down
// returning once the API shows no droplet; then cluster gc by a second
// coordinator whose state is empty deletes the droplets a killed one
// made. Nothing is left: no droplet, agent, namespace or mount.
func TestDigitalOcean(t *testing.T) {
	testutil.Short(t)
	testutil.NeedSystem(t, "root, docker.io, iproute2, iptables and curl", errors.Join(netns.Check(), lookPath("curl")))
	imageID := hostImage(t, octaveImage)
	const nodes = 2
	c := startCloud(t, nodes)
	addr := freeAddrPair(t, c.env["DOFAKE_HOST_ADDR"])
	co := c.startCoordinator(t, t.TempDir(), addr)
	docker := c.poolDocker(t, nodes)

	t.Run("dry run shows the cost and creates nothing", func(t *testing.T) {
		out := co.must("cluster", "up", "--nodes", "2", "--dry-run")
		for _, want := range []string{"cost: " + dropletPrice + "/h", "the cluster would cost $0.07142/h", "<secret-masked>", "#cloud-config"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run does not show %q:\n%s", want, out)
			}
		}
		if n := c.droplets(); n != 0 {
			t.Errorf("the dry run made %d droplets", n)
		}
	})

	var names []string
	t.Run("cluster up", func(t *testing.T) {
		start := time.Now()
		r := co.client("cluster", "up", "--nodes", "2")
		took := time.Since(start)
		if r.Code != 0 {
			t.Fatalf("cluster up: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		ms := co.machines()
		if len(ms) != nodes {
			t.Fatalf("machines %+v, want %d", ms, nodes)
		}
		// Off a terminal, a line per change of each machine: at least the
		// first seen and the last, ready in the swarm.
		roles := map[string]bool{}
		for _, m := range ms {
			names = append(names, m.Name)
			lines := regexp.MustCompile(`(?m)^machine `+m.ID+`: .*$`).FindAllString(r.Stderr, -1)
			if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], ", swarm ") {
				t.Errorf("machine %s: progress lines %q, want a line per step ending ready, in the swarm", m.ID, lines)
			}
			roles[m.Role] = true
		}
		if !roles["manager"] || !roles["worker"] {
			t.Errorf("machine roles %v, want a manager and a worker", roles)
		}
		for _, want := range []string{dropletPrice, "the machines cost $0.07142 an hour"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("cluster up does not show the cost %q:\n%s", want, r.Stdout)
			}
		}
		t.Logf("figure: cluster up --nodes %d to every node in the swarm: %s", nodes, took.Round(time.Millisecond))
		if n := c.droplets(); n != nodes {
			t.Errorf("the API shows %d droplets of the cluster, want %d", n, nodes)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("every node ready in one swarm", func(t *testing.T) {
		for _, n := range co.nodes() {
			if n.State != "NODE_STATE_READY" || n.SwarmNodeID == "" || !slices.Contains(names, n.Hostname) {
				t.Errorf("node %+v: want ready, in the swarm, named after its droplet", n)
			}
		}
		var ready []string
		for _, d := range docker {
			list, err := d.NodeList(context.Background(), swarm.NodeListOptions{})
			if err != nil {
				continue // a worker
			}
			for _, sn := range list {
				if sn.Status.State == swarm.NodeStateReady {
					ready = append(ready, sn.Description.Hostname)
				}
			}
		}
		slices.Sort(ready)
		slices.Sort(names)
		if !slices.Equal(ready, names) {
			t.Errorf("docker node ls on the manager: ready %v, want the droplets %v", ready, names)
		}
	})

	t.Run("stolen, expired and foreign tokens create no node", func(t *testing.T) {
		before := len(co.nodes())
		// What any process on a droplet can read: its user-data, from the
		// metadata service, with the join token cloud-init used.
		ud, err := exec.Command("ip", "netns", "exec", c.name+"-n0", "curl", "--silent", "--fail", "--max-time", "10",
			"http://169.254.169.254/metadata/v1/user-data").Output()
		stolen := tokenRE.Find(ud)
		if err != nil || stolen == nil {
			t.Fatalf("user-data from the metadata service (%v) holds no join token:\n%s", err, ud)
		}
		expiring := strings.TrimSpace(co.must("token", "create", "--ttl", "1s", "--label", "expiring"))
		admin := strings.TrimSpace(co.must("token", "create", "--label", "not minted for a droplet"))
		meta := metadataServer(t, "500000001", "impostor") // claims a droplet of the cluster
		time.Sleep(1100 * time.Millisecond)                // the 1s token expires: wall-clock expiry, not a timing assertion
		for _, tc := range []struct{ name, token, want string }{
			{"a droplet's token used again", string(stolen), " is used: ask an admin"},
			{"an expired token", expiring, " is expired: ask an admin"},
			{"a token not minted for a droplet, claiming one", admin, "not minted for a droplet of cluster " + clusterName},
		} {
			code, out := runAgent(t, addr, tc.token, meta)
			if code != 3 || !strings.Contains(out, tc.want) {
				t.Errorf("%s: agent exit %d, want 3 (refused) with %q:\n%s", tc.name, code, tc.want, tail(out, 20))
			} else {
				t.Logf("%s: refused: %s", tc.name, tail(out, 1))
			}
		}
		if after := len(co.nodes()); after != before {
			t.Errorf("nodes %d after the refusals, want %d", after, before)
		}
	})

	t.Run("linreg on the Octave image", func(t *testing.T) {
		sub := co.client("submit", "-f", filepath.Join(repoRoot(), "examples/linreg/cloudml.yaml"), "--image", octaveImage)
		if sub.Code != 0 || !strings.Contains(sub.Stderr, "pushed image "+octaveImage) {
			t.Fatalf("submit: exit %d; stderr should report the image push:\n%s", sub.Code, sub.Stderr)
		}
		job := strings.TrimSpace(sub.Stdout)
		if r := co.client("logs", "-f", job); r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s\n%s", r.Code, r.Stderr, co.must("status", job))
		}
		var st struct {
			State string `json:"state"`
			Tasks []struct {
				NodeID string `json:"nodeId"`
			} `json:"tasks"`
		}
		if err := json.Unmarshal([]byte(co.must("-o", "json", "status", job)), &st); err != nil {
			t.Fatal(err)
		}
		ran := map[string]bool{}
		for _, tk := range st.Tasks {
			ran[tk.NodeID] = true
		}
		if st.State != "JOB_STATE_SUCCEEDED" || len(st.Tasks) != 12 || len(ran) != nodes {
			t.Errorf("linreg: %s, %d tasks on nodes %v; want 12 succeeded on both droplets", st.State, len(st.Tasks), ran)
		}
		if res := co.must("results", job); !strings.Contains(res, "best: task 2 (lambda=0 lr=0.3)") {
			t.Errorf("results:\n%s", res)
		}
		for i, d := range docker { // pushed by submit, fetched by each droplet from the coordinator
			if got, err := d.ImageInspect(context.Background(), octaveImage); err != nil || got.ID != imageID {
				t.Errorf("droplet on node %d: image %s is %q (%v), want %s", i, octaveImage, got.ID, err, imageID)
			}
		}
		t.Setenv("STORAGE_EMULATOR_HOST", c.env["STORAGE_EMULATOR_HOST"])
		b, loc, err := bucket.Open(context.Background(), c.env["DOFAKE_BUCKET"]+"/runs")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		objs, err := b.List(context.Background(), loc.Key+"/results/"+job+"/")
		if err != nil {
			t.Fatal(err)
		}
		manifests := 0
		for _, o := range objs {
			if strings.HasSuffix(o.Key, "/manifest.json") {
				manifests++
			}
		}
		if manifests != 12 {
			t.Errorf("the bucket holds %d manifests of %s, want 12: %v", manifests, job, objs)
		}
	})

	t.Run("cluster down returns once no droplet is left", func(t *testing.T) {
		start := time.Now()
		r := co.client("cluster", "down")
		if r.Code != 0 || !strings.Contains(r.Stdout, "2 machines deleted; the provider confirmed each gone") {
			t.Fatalf("cluster down: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		if n := c.droplets(); n != 0 {
			t.Errorf("cluster down returned with %d droplets at the API", n)
		}
		testutil.Eventually(t, time.Minute, 100*time.Millisecond, "the droplets halted", func() error {
			if a := agents(addr); len(a) > 0 {
				return fmt.Errorf("agents still run: %v", a)
			}
			for i, d := range docker {
				info, err := d.Info(context.Background())
				if err != nil || info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive || info.Containers != 0 {
					return fmt.Errorf("node %d: swarm %s, %d containers (%v)", i, info.Swarm.LocalNodeState, info.Containers, err)
				}
			}
			return nil
		})
		t.Logf("figure: cluster down of %d droplets: %s, then 0 droplets at the API", nodes, time.Since(start).Round(time.Millisecond))
	})

	t.Run("cluster gc with the state lost deletes every droplet", func(t *testing.T) {
		start := time.Now()
		co.must("cluster", "up", "--nodes", "2", "--timeout", "2m") // a new swarm, not the deleted manager's
		t.Logf("figure: a second cluster up --nodes %d to every node in the swarm: %s", nodes, time.Since(start).Round(time.Millisecond))
		co.kill()
		if err := os.RemoveAll(co.state); err != nil {
			t.Fatal(err)
		}
		again := c.startCoordinator(t, t.TempDir(), addr, "--keep-strays")
		dry := again.must("cluster", "gc", "--dry-run")
		if n := c.droplets(); n != nodes || !strings.Contains(dry, "2 machines the coordinator does not know") {
			t.Fatalf("gc --dry-run with %d droplets left:\n%s", n, dry)
		}
		out := again.must("cluster", "gc")
		left, deleted := c.droplets(), len(regexp.MustCompile(`(?m) yes\s*$`).FindAllString(out, -1))
		t.Logf("figure: cluster gc by a coordinator with an empty state: %d of %d droplets deleted, %d left at the API", deleted, nodes, left)
		if left != 0 || deleted != nodes {
			t.Errorf("gc:\n%s\n%d droplets left", out, left)
		}
		testutil.Eventually(t, time.Minute, 100*time.Millisecond, "the droplets' agents gone", func() error {
			if a := agents(addr); len(a) > 0 {
				return fmt.Errorf("agents still run: %v", a)
			}
			return nil
		})
		again.stop()
	})

	co.stop()
	c.stop()
	m := summaryRE.FindStringSubmatch(c.summary)
	t.Logf("figure: %s", strings.TrimPrefix(c.summary, "dofake: "))
	if m == nil || m[1] != "4" || m[2] != "4" || m[3] != "0" {
		t.Errorf("dofake's summary %q, want 4 droplets created, 4 deleted, 0 left", c.summary)
	}
}

// tokenRE matches a join token.
var tokenRE = regexp.MustCompile(`CMLTKN-1-[0-9a-f]{64}-[0-9a-f]+-[A-Za-z0-9_-]+`)

// runAgent runs cloudml-agent from this machine (outside the droplets)
// with token and --metadata-url meta, and returns its exit status and
// output once it stopped (a refused token ends it).
func runAgent(t *testing.T, addr, token, meta string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin("cloudml-agent"), "--coordinator", addr, "--token-file", file,
		"--work-dir", filepath.Join(dir, "work"), "--metadata-url", meta, "--slots", "1")
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

// metadataServer serves a droplet metadata service that claims droplet
// id, named name.
func metadataServer(t *testing.T, id, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metadata/v1/id":
			fmt.Fprint(w, id)
		case "/metadata/v1/hostname":
			fmt.Fprint(w, name)
		case "/metadata/v1/interfaces/private/0/ipv4/address", "/metadata/v1/interfaces/public/0/ipv4/address":
			fmt.Fprint(w, "127.0.0.1")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata/v1"
}

func lookPath(name string) error {
	_, err := exec.LookPath(name)
	return err
}
