package netnsboot

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// swarmScript is the manual recipe: swarm init on the first node, its
// worker join token, swarm join on each other one. $1 and $2 are the
// manager's Docker host and address, then a Docker host and an address
// per worker. It prints how long the init took, in nanoseconds.
const swarmScript = `set -eu
t0=$(date +%s%N)
docker -H "$1" swarm init --advertise-addr "$2" --listen-addr 0.0.0.0:2377 >/dev/null
echo "init_ns=$(( $(date +%s%N) - t0 ))"
tok=$(docker -H "$1" swarm join-token -q worker)
mgr=$2
shift 2
while [ $# -gt 0 ]; do
  docker -H "$1" swarm join --token "$tok" --advertise-addr "$2" "$mgr:2377" >/dev/null
  shift 2
done
`

// initNsRE finds the script's init time in its output.
var initNsRE = regexp.MustCompile(`(?m)^init_ns=([0-9]+)$`)

// ScriptTimes is how long the manual recipe took.
type ScriptTimes struct {
	// Took is the script's start to the manager listing every node ready.
	Took time.Duration
	// Init is the docker swarm init alone.
	Init time.Duration
}

// ScriptSwarm is the baseline of the droplets' timings: it makes the
// first n nodes of the pool, which must run no droplet, a swarm as the
// manual recipe does with a script (docker swarm init on one, its worker
// join token, docker swarm join on the others, each with its node's
// address), waits until the manager lists the n nodes ready, and returns
// how long that took. The nodes then leave the swarm again and are free
// for droplets.
func (b *Booter) ScriptSwarm(ctx context.Context, n int) (ScriptTimes, error) {
	if n < 1 || n > len(b.nodes) {
		return ScriptTimes{}, fmt.Errorf("script swarm of %d nodes: the pool has %d", n, len(b.nodes))
	}
	b.mu.Lock()
	for i := range n {
		if b.busy[i] != 0 {
			b.mu.Unlock()
			return ScriptTimes{}, fmt.Errorf("script swarm: node %d runs droplet %d", i, b.busy[i])
		}
	}
	for i := range n {
		b.busy[i] = -1 // no droplet boots there meanwhile
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		for i := range n {
			b.busy[i] = 0
		}
		b.signalFreed()
		b.mu.Unlock()
	}()

	args := []string{"sh", "-c", swarmScript, "swarm"}
	for _, nd := range b.nodes[:n] {
		args = append(args, nd.DockerHost, nd.Addr)
	}
	start := time.Now()
	took, err := b.scriptSwarm(ctx, n, args)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for i := n - 1; i >= 0; i-- { // workers first, the manager last
		out, err := exec.CommandContext(ctx, "docker", "-H", b.nodes[i].DockerHost, "swarm", "leave", "--force").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "not part of a swarm") {
			errs = append(errs, fmt.Errorf("node %d: swarm leave: %w: %s", i, err, strings.TrimSpace(string(out))))
		}
	}
	b.log.Info("script swarm", "nodes", n, "took", took.Took, "init", took.Init, "elapsed", timeSince(start))
	return took, errors.Join(errs...)
}

// scriptSwarm runs the script and waits until the first node lists n
// ready nodes.
func (b *Booter) scriptSwarm(ctx context.Context, n int, args []string) (ScriptTimes, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return ScriptTimes{}, fmt.Errorf("swarm script: %w: %s", err, strings.TrimSpace(string(out)))
	}
	var times ScriptTimes
	m := initNsRE.FindSubmatch(out)
	if m == nil {
		return ScriptTimes{}, fmt.Errorf("swarm script: no init time in its output %q", out)
	}
	ns, _ := strconv.ParseInt(string(m[1]), 10, 64)
	times.Init = time.Duration(ns)
	cli, err := b.cluster.DockerClient(0)
	if err != nil {
		return ScriptTimes{}, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		list, err := cli.NodeList(ctx, swarm.NodeListOptions{})
		ready := 0
		for _, sn := range list {
			if sn.Status.State == swarm.NodeStateReady {
				ready++
			}
		}
		if err == nil && ready >= n {
			times.Took = time.Since(start)
			return times, nil
		}
		select {
		case <-ctx.Done():
			return ScriptTimes{}, fmt.Errorf("script swarm: %d of %d nodes ready (%v): %w", ready, n, err, ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
}
