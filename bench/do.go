package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/dofake/netnsboot"
	"github.com/cloudml/cloudml/internal/dofake/testcloud"
	"github.com/cloudml/cloudml/internal/logging"
)

// doName is the netns prefix of the DigitalOcean test cloud.
const doName = "cmlbdo"

// doRows measures (d): `cluster up --nodes n` on the DigitalOcean test
// server (internal/dofake/testcloud: droplets that boot their user-data
// on network-namespace nodes) until every node is in the swarm, against
// the manual recipe on the same nodes (netnsboot's ScriptSwarm: docker
// swarm init on one, docker swarm join on the others). Each run takes
// the cluster down again and alternates which side goes first. Droplets
// become active at once here; on DigitalOcean they take about 30 s more,
// which neither side controls.
func doRows(runs, nodes int) (rows []row, teardown string, err error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "cloudml-bench-do-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	ccfg := testcloud.Config{Name: doName, Nodes: nodes, Bucket: benchBucket, WorkDir: filepath.Join(dir, "work")}
	logLevel := "warn"
	var trace *tracer
	inits := &initWatch{start: map[string]time.Time{}}
	ccfg.Console = logging.NewLineFunc(inits.line)
	if doTrace != "" {
		if trace, err = newTracer(doTrace); err != nil {
			return nil, "", err
		}
		defer trace.close()
		ccfg.Console = io.MultiWriter(ccfg.Console, trace.writer("console "))
		ccfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "testcloud", Level: hclog.Debug, Output: trace.writer("")})
		logLevel = "debug"
	}
	cloud, err := testcloud.Start(ctx, ccfg)
	if err != nil {
		return nil, "", err
	}
	var b *bench
	defer func() {
		var errs []error
		if b != nil {
			if err != nil {
				err = fmt.Errorf("%w\ncoordinator log tail:\n%s", err, b.logTail())
			}
			if cerr := b.close(60 * time.Second); cerr != nil {
				errs = append(errs, cerr)
			}
		}
		sum, cerr := cloud.Close()
		teardown = "test cloud torn down: " + sum.String()
		if cerr != nil || sum.Left != 0 {
			errs = append(errs, fmt.Errorf("test cloud: %s: %v", sum, cerr))
			teardown = "test cloud teardown failed"
		}
		err = errors.Join(append([]error{err}, errs...)...)
	}()
	host := cloud.HostAddr()
	addr, err := freeAddr(host)
	if err != nil {
		return nil, "", err
	}
	download, err := freeAddr(host)
	if err != nil {
		return nil, "", err
	}
	var env []string
	for _, kv := range cloud.Env() {
		if strings.HasPrefix(kv, "DIGITALOCEAN_TOKEN=") || strings.HasPrefix(kv, "STORAGE_EMULATOR_HOST=") {
			env = append(env, kv)
		}
	}
	b, err = startCoordinatorOn(dir, addr, env, "--provider", "digitalocean", "--do-api-url", cloud.APIURL(),
		"--advertise", addr, "--download-listen", download, "--swarm-peers", cloud.Subnet().String(),
		"--cluster-name", "bench", "--state", filepath.Join(dir, "state"), "--bucket", "gs://"+benchBucket+"/runs",
		"--agent-bin", "bin/cloudml-agent", "--log-level", logLevel, "--agent-log-level", logLevel)
	if err != nil {
		return nil, "", err
	}
	if trace != nil {
		b.log.watch(func(at time.Time, line string) { trace.line(at, "coordinator ", line) })
		b.trace = trace
	}
	if err := b.waitConfig(30 * time.Second); err != nil {
		return nil, "", err
	}
	var up, script, upInit, scriptInit []time.Duration
	for i := range runs {
		var u time.Duration
		var s netnsboot.ScriptTimes
		if i%2 == 0 {
			if s, err = scriptRun(ctx, cloud, nodes); err == nil {
				u, err = upRun(b, cloud, nodes)
			}
		} else {
			if u, err = upRun(b, cloud, nodes); err == nil {
				s, err = scriptRun(ctx, cloud, nodes)
			}
		}
		if err != nil {
			return nil, "", err
		}
		up, script = append(up, u), append(script, s.Took)
		upInit, scriptInit = append(upInit, inits.take()...), append(scriptInit, s.Init)
	}
	mu, ms := median(up), median(script)
	fmt.Printf("d) each run, in order: cloudml %s; script %s\n", roundAll(up), roundAll(script))
	fmt.Printf("d) its docker swarm init alone: cloudml's founder %s; script %s\n", roundAll(upInit), roundAll(scriptInit))
	rows = append(rows, row{
		name:     fmt.Sprintf("d) cluster up --nodes %d to all in the swarm", nodes),
		cloudml:  mu.Round(time.Millisecond).String(),
		baseline: ms.Round(time.Millisecond).String() + " (init/join script)",
		ratio:    fmt.Sprintf("%.2f", mu.Seconds()/ms.Seconds()),
		goal:     "<= 1.2",
	})
	return rows, "", nil
}

// upRun times `cluster up --nodes n` to its return (every machine ready
// in the swarm), then takes the cluster down and waits until the nodes
// are free again.
func upRun(b *bench, cloud *testcloud.Cloud, nodes int) (time.Duration, error) {
	start := time.Now()
	if _, err := b.output("cluster", "up", "--nodes", fmt.Sprint(nodes), "--timeout", "2m"); err != nil {
		return 0, err
	}
	took := time.Since(start)
	if _, err := b.output("cluster", "down", "--timeout", "2m"); err != nil {
		return 0, err
	}
	return took, waitFree(cloud, nodes)
}

// scriptRun times the manual recipe on the pool's first n nodes.
func scriptRun(ctx context.Context, cloud *testcloud.Cloud, nodes int) (netnsboot.ScriptTimes, error) {
	if err := waitFree(cloud, nodes); err != nil {
		return netnsboot.ScriptTimes{}, err
	}
	return cloud.Booter().ScriptSwarm(ctx, nodes)
}

// initWatch times the founder's docker swarm init from the droplets'
// consoles, where the bootstrap says when it starts founding the swarm
// and when the swarm is founded (arrival times: both lines come the same
// way).
type initWatch struct {
	mu    sync.Mutex           // protects start, took
	start map[string]time.Time // droplet name: when its founding began
	took  []time.Duration
}

func (w *initWatch) line(line string) {
	name, said, ok := strings.Cut(line, " cloud-init: cloudml-bootstrap: ")
	if !ok {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case strings.HasPrefix(said, "founding the swarm"):
		w.start[name] = now
	case said == "swarm founded":
		if t, ok := w.start[name]; ok {
			w.took = append(w.took, now.Sub(t))
			delete(w.start, name)
		}
	}
}

// take returns the inits timed since the last take.
func (w *initWatch) take() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.took
	w.took = nil
	return out
}

// waitFree waits until the deleted droplets' machines are halted and
// their nodes free.
func waitFree(cloud *testcloud.Cloud, nodes int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		st := cloud.Booter().Stats()
		if st.Free >= nodes {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes free a minute after cluster down", st.Free, nodes)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// waitConfig waits until the coordinator wrote its admin credential.
func (b *bench) waitConfig(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(b.configPath()); err == nil {
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("the coordinator exited:\n%s", b.logTail())
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the coordinator wrote no credential within %s:\n%s", limit, b.logTail())
		}
	}
}

// roundAll rounds each duration to the millisecond.
func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
