package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/cloudml/cloudml/internal/netns"
)

// swarmName is the netns prefix of the bench's cluster.
const swarmName = "cmlbench"

// benchBucket is the fake GCS bucket of the swarm benchmarks.
const benchBucket = "bench"

// swarmBench is `coordinator serve --provider netns` on a 3-node swarm with
// a fake GCS server (disk backend) the agents reach over the bridge.
type swarmBench struct {
	*bench
	nodes    int
	hostAddr string // the host's bridge address, 10.213.X.1
	gcs      *fakestorage.Server
	gcsRoot  string
	gcsPort  string
	docker   []*client.Client // per node, 0-based like netns.DockerHost
	manager  int              // index of the swarm manager's node
}

// startSwarm builds the cluster and waits until every node is in the
// swarm and has the busybox test image.
func startSwarm(ctx context.Context, nodes, slots int) (_ *swarmBench, err error) {
	dir, err := os.MkdirTemp("", "cloudml-bench-swarm-")
	if err != nil {
		return nil, err
	}
	s := &swarmBench{nodes: nodes, gcsRoot: filepath.Join(dir, "gcs"), manager: -1}
	defer func() {
		if err != nil {
			s.close()
			os.RemoveAll(dir)
		}
	}()
	subnet, host, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	s.hostAddr = host
	gcsAddr, err := freeAddr("0.0.0.0")
	if err != nil {
		return nil, err
	}
	_, s.gcsPort, _ = net.SplitHostPort(gcsAddr)
	port, _ := strconv.Atoi(s.gcsPort)
	// An explicit port on 0.0.0.0: with port 0 the fake binds loopback only,
	// and the agents reach the host through the bridge. The disk backend
	// keeps the 1 GiB object out of memory.
	s.gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "0.0.0.0", Port: uint16(port), StorageRoot: s.gcsRoot})
	if err != nil {
		return nil, fmt.Errorf("fake-gcs-server: %w", err)
	}
	s.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: benchBucket})
	b, err := startCoordinator(dir, []string{"STORAGE_EMULATOR_HOST=" + net.JoinHostPort(host, s.gcsPort)},
		"--provider", "netns", "--nodes", fmt.Sprint(nodes), "--slots", fmt.Sprint(slots),
		"--netns-name", swarmName, "--netns-subnet", subnet, "--state", filepath.Join(dir, "state"),
		"--bucket", "gs://"+benchBucket+"/runs", "--log-level", "info", "--agent-log-level", "info")
	if err != nil {
		return nil, err
	}
	s.bench = b
	b.env = []string{"STORAGE_EMULATOR_HOST=" + net.JoinHostPort("127.0.0.1", s.gcsPort)}
	if err := s.waitSwarm(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	for i := 0; i < nodes; i++ {
		cli, err := client.NewClientWithOpts(client.WithHost(netns.DockerHost(swarmName, i)), client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, err
		}
		s.docker = append(s.docker, cli)
	}
	if err := s.importBusybox(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// freeSubnet picks a 10.213.X.0/24 that no route of this host uses.
func freeSubnet() (subnet, host string, err error) {
	out, err := exec.Command("ip", "-4", "route", "show").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("ip route: %w: %s", err, out)
	}
	for x := 200; x < 250; x++ {
		p := fmt.Sprintf("10.213.%d.", x)
		if !strings.Contains(string(out), p) {
			return p + "0/24", p + "1", nil
		}
	}
	return "", "", errors.New("no free 10.213.X.0/24 subnet")
}

// benchNode is a row of `cluster nodes -o json`.
type benchNode struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Address     string `json:"address"`
	SwarmNodeID string `json:"swarmNodeId"`
	SwarmRole   string `json:"swarmRole"`
}

func (s *swarmBench) listNodes() []benchNode {
	out, err := s.output("-o", "json", "cluster", "nodes")
	if err != nil {
		return nil
	}
	var l struct {
		Nodes []benchNode `json:"nodes"`
	}
	json.Unmarshal(out, &l)
	return l.Nodes
}

// waitSwarm waits until every node is ready and in the swarm, and finds the
// manager (node i has the address .(10+i)).
func (s *swarmBench) waitSwarm(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		in, mgr := 0, -1
		for _, n := range s.listNodes() {
			if n.State == "NODE_STATE_READY" && n.SwarmNodeID != "" {
				in++
			}
			if n.SwarmRole == "manager" {
				last, _ := strconv.Atoi(n.Address[strings.LastIndex(n.Address, ".")+1:])
				mgr = last - 10
			}
		}
		if in == s.nodes && mgr >= 0 && mgr < s.nodes {
			s.manager = mgr
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the coordinator exited:\n%s", s.logTail())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("the %d nodes did not form a swarm within %s:\n%s", s.nodes, limit, s.logTail())
}

// importBusybox puts the test image on every node, as `docker load` would.
func (s *swarmBench) importBusybox(ctx context.Context) error {
	rootfs, err := netns.BusyboxRootfs()
	if err != nil {
		return err
	}
	for i, cli := range s.docker {
		rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"},
			netns.BusyboxImage, image.ImportOptions{Changes: []string{"ENV PATH=/bin"}})
		if err != nil {
			return fmt.Errorf("import busybox on node %d: %w", i, err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	return nil
}

// mgr is the manager's Docker client.
func (s *swarmBench) mgr() *client.Client { return s.docker[s.manager] }

// settle waits until the swarm has no services and no node has containers,
// so one measurement does not run into the clean-up of the previous one.
func (s *swarmBench) settle(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		busy := ""
		svcs, err := s.mgr().ServiceList(ctx, swarm.ServiceListOptions{})
		if err != nil {
			return err
		}
		if len(svcs) > 0 {
			busy = fmt.Sprintf("%d services", len(svcs))
		}
		for i, cli := range s.docker {
			cs, err := cli.ContainerList(ctx, container.ListOptions{All: true})
			if err != nil {
				return err
			}
			if len(cs) > 0 {
				busy += fmt.Sprintf(" node %d: %d containers", i, len(cs))
			}
		}
		if busy == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the swarm did not settle within 2m: %s", busy)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// close stops the coordinator (which removes the namespaces, daemons and
// bridge) and checks that no namespace of the cluster is left.
func (s *swarmBench) close() error {
	var errs []error
	for _, cli := range s.docker {
		cli.Close()
	}
	if s.bench != nil {
		if err := s.bench.close(90 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if s.gcs != nil {
		s.gcs.Stop()
	}
	if left := leftNamespaces(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left behind: %v (removed now)", left))
		netns.Cleanup(swarmName)
	}
	return errors.Join(errs...)
}

// leftNamespaces lists the cluster's namespaces `ip netns list` still shows.
func leftNamespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], swarmName+"-") {
			left = append(left, f[0])
		}
	}
	return left
}
