package netns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"
)

func clients(t *testing.T, c *Cluster) []*client.Client {
	t.Helper()
	var out []*client.Client
	for i := range c.Nodes() {
		cli, err := c.DockerClient(i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		out = append(out, cli)
	}
	return out
}

func TestDaemonsAnswerAndNodesTalk(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	nodes := c.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("got %d nodes, want 3", len(nodes))
	}
	for i, cli := range clients(t, c) {
		info, err := cli.Info(ctx)
		if err != nil {
			t.Fatalf("node %d: Info: %v", i, err)
		}
		if info.ServerVersion == "" {
			t.Errorf("node %d: server version %q", i, info.ServerVersion)
		}
		if info.Name != nodes[i].Name {
			t.Errorf("node %d: daemon hostname %q, want %q", i, info.Name, nodes[i].Name)
		}
		if want := nodes[i].Dir + "/data"; info.DockerRootDir != want {
			t.Errorf("node %d: docker root dir %q, want %q", i, info.DockerRootDir, want)
		}
	}
	// Node 1 serves one line on TCP; node 0 fetches it over the bridge.
	srv := c.Command(ctx, 1, "busybox", "nc", "-l", "-p", "7777", "-e", "echo", "hello over the bridge")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var got string
	eventually(t, 10*time.Second, "tcp from node 0 to node 1", func() error {
		out, err := c.Command(ctx, 0, "busybox", "nc", "-w", "2", nodes[1].Addr, "7777").Output()
		got = string(out)
		if err != nil || !strings.Contains(got, "hello") {
			return fmt.Errorf("nc: %v, output %q", err, out)
		}
		return nil
	})
	if want := "hello over the bridge\n"; got != want {
		t.Errorf("node 0 read %q from node 1, want %q", got, want)
	}
}

func TestSwarmByHand(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	nodes := c.Nodes()
	clis := clients(t, c)
	t.Cleanup(func() { // the cluster is shared: leave it as found, for -count
		for _, cli := range clis {
			_ = cli.SwarmLeave(context.Background(), true)
		}
	})
	start := time.Now()
	if _, err := clis[0].SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: nodes[0].Addr}); err != nil {
		t.Fatalf("swarm init: %v", err)
	}
	sw, err := clis[0].SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(nodes); i++ {
		err := clis[i].SwarmJoin(ctx, swarm.JoinRequest{
			ListenAddr: "0.0.0.0:2377", AdvertiseAddr: nodes[i].Addr,
			RemoteAddrs: []string{nodes[0].Addr + ":2377"}, JoinToken: sw.JoinTokens.Worker,
		})
		if err != nil {
			t.Fatalf("node %d: swarm join: %v", i, err)
		}
	}
	var ready []string
	eventually(t, 30*time.Second, "3 ready swarm nodes", func() error {
		list, err := clis[0].NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return err
		}
		ready = ready[:0]
		for _, n := range list {
			if n.Status.State == swarm.NodeStateReady {
				ready = append(ready, n.Description.Hostname+"@"+n.Status.Addr)
			}
		}
		if len(ready) != 3 {
			return fmt.Errorf("ready nodes %v of %d", ready, len(list))
		}
		return nil
	})
	t.Logf("swarm of 3 formed in %s (ready: %v)", time.Since(start).Round(time.Millisecond), ready)
	slices.Sort(ready)
	var want []string
	for _, n := range nodes {
		want = append(want, n.Name+"@"+n.Addr)
	}
	if diff := cmp.Diff(want, ready); diff != "" {
		t.Errorf("ready swarm nodes (-want +got):\n%s", diff)
	}

	img, err := c.ImportBusybox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	replicas := uint64(3)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "hello"},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: img, Command: []string{"sh", "-c", "echo hello from $(hostname); sleep 1"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	if _, err := clis[0].ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatalf("service create: %v", err)
	}
	perNode := make([]int, len(nodes))
	eventually(t, 30*time.Second, "3 exited task containers", func() error {
		total := 0
		for i, cli := range clis {
			list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=hello"), filters.Arg("status", "exited"))})
			if err != nil {
				return err
			}
			perNode[i] = len(list)
			total += len(list)
			for _, ct := range list {
				if err := checkHello(ctx, cli, ct.ID); err != nil {
					return fmt.Errorf("node %d: %w", i, err)
				}
			}
		}
		if total != 3 {
			return fmt.Errorf("exited containers per node %v", perNode)
		}
		return nil
	})
	used := 0
	for _, n := range perNode {
		if n > 0 {
			used++
		}
	}
	t.Logf("3 tasks ran in %s, per node %v", time.Since(start).Round(time.Millisecond), perNode)
	if used < 2 {
		t.Errorf("tasks ran on %d node(s) (%v), want at least 2", used, perNode)
	}
}

// checkHello checks that a task container exited 0 after printing its
// greeting.
func checkHello(ctx context.Context, cli *client.Client, id string) error {
	insp, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		return err
	}
	if insp.State.ExitCode != 0 {
		return fmt.Errorf("container %s exited %d", id, insp.State.ExitCode)
	}
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true})
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if !bytes.Contains(out, []byte("hello from ")) {
		return fmt.Errorf("container %s logged %q", id, out)
	}
	return nil
}
