// Command dofake serves a DigitalOcean stand-in on this machine for the
// real binaries (internal/dofake/testcloud): the API test server, whose
// droplets are network-namespace nodes that boot their user-data, their
// metadata service, and with --bucket a fake GCS bucket the droplets
// reach. It is for `make demo-do` and test/do, not a product binary.
// Root, docker.io, iproute2, iptables and curl are needed.
//
//	go run ./internal/dofake/cmd/dofake --nodes 2 --bucket demo --env-file dofake.env
//
// Once ready it prints, and writes to --env-file (mode 0600), what a
// coordinator and a client need as NAME=value lines (DIGITALOCEAN_TOKEN,
// DOFAKE_API_URL, DOFAKE_HOST_ADDR, DOFAKE_SUBNET, DOFAKE_POOL, and with a
// bucket DOFAKE_BUCKET and STORAGE_EMULATOR_HOST); the file appears only
// then, so a script can wait for it. On SIGTERM or SIGINT it halts the
// droplets left, tears everything down and prints
//
//	dofake: droplets created N, deleted N, left N
//
// where left counts the droplets still alive at that moment (a leak, for
// a coordinator that should have deleted them). It exits 1 when the
// teardown left something behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cloudml/cloudml/internal/dofake/testcloud"
	"github.com/cloudml/cloudml/internal/logging"
)

func main() {
	var cfg testcloud.Config
	fs := flag.NewFlagSet("dofake", flag.ExitOnError)
	fs.IntVar(&cfg.Nodes, "nodes", 3, "most droplets alive at once (network-namespace nodes, each with a dockerd)")
	fs.StringVar(&cfg.Name, "name", "", "prefix of the namespaces, bridge and rules, 1-10 of [a-z0-9] (default: unique to this process)")
	fs.StringVar(&cfg.Subnet, "subnet", "", "the droplets' network, e.g. 10.213.9.0/24 (default: a free 10.213.X.0/24)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "directory for the daemons' data and the droplets' files (default: a temporary one, removed at exit)")
	fs.StringVar(&cfg.Bucket, "bucket", "", "serve a fake GCS bucket of this name that the droplets reach (default: none)")
	fs.DurationVar(&cfg.ActiveDelay, "active-delay", 0, "how long a droplet stays new before it boots (DigitalOcean: about 30s)")
	envFile := fs.String("env-file", "", "write the NAME=value lines there (0600) once ready")
	console := fs.String("console", "", "write the droplets' consoles (cloud-init, the agent's output) to this file (default: discard)")
	level := fs.String("log-level", "warn", "log level: trace, debug, info, warn, error")
	fs.Parse(os.Args[1:])
	log := logging.New("dofake", *level, false)
	cfg.Logger = log
	if *console != "" {
		f, err := os.OpenFile(*console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fatal(err)
		}
		defer f.Close()
		cfg.Console = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	c, err := testcloud.Start(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	env := strings.Join(c.Env(), "\n") + "\n"
	fmt.Print(env)
	fmt.Printf("dofake: %d droplets at most, ready in %s; serve the coordinator on %s; SIGTERM or Ctrl-C tears it down\n",
		cfg.Nodes, time.Since(start).Round(time.Millisecond), c.HostAddr())
	if *envFile != "" {
		if err := writeFile(*envFile, env); err != nil {
			c.Close()
			fatal(err)
		}
	}
	<-ctx.Done()
	sum, err := c.Close()
	fmt.Printf("dofake: %s\n", sum)
	if *envFile != "" {
		os.Remove(*envFile)
	}
	if err != nil {
		fatal(err)
	}
}

// writeFile writes data to path at once: a reader sees all of it or no
// file.
func writeFile(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dofake-env-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.WriteString(tmp, data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "dofake: %v\n", err)
	os.Exit(1)
}
