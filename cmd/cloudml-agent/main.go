// Command cloudml-agent runs on every node: it dials the coordinator, holds a
// session, and stages, runs and reports the tasks it is given. See agent/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudml/cloudml/agent"
	"github.com/cloudml/cloudml/internal/logging"
)

func main() {
	cfg := agent.DefaultConfig()
	fs := flag.NewFlagSet("cloudml-agent", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `cloudml-agent: the CloudML node agent.

It registers with the coordinator using the cluster's bootstrap token (kept
only until the node has its own credential in --work-dir), holds a session,
and runs the tasks it is assigned: stages code and data from the bucket,
runs the command, ships its logs, uploads results.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.CoordinatorAddr, "coordinator", envOr("CLOUDML_COORDINATOR", "127.0.0.1:7070"), "coordinator address host:port (env CLOUDML_COORDINATOR)")
	fs.StringVar(&cfg.BootstrapToken, "token", os.Getenv("CLOUDML_TOKEN"), "cluster bootstrap token (env CLOUDML_TOKEN)")
	fs.StringVar(&cfg.WorkDir, "work-dir", cfg.WorkDir, "directory for the node identity, the staging cache and task directories")
	fs.IntVar(&cfg.Slots, "slots", cfg.Slots, "tasks to run at once (default: number of CPUs)")
	fs.StringVar(&cfg.Hostname, "hostname", cfg.Hostname, "hostname to report")
	fs.StringVar(&cfg.Address, "address", cfg.Address, "address to advertise to peers")
	fs.StringVar(&cfg.Docker, "docker", os.Getenv("DOCKER_HOST"), "Docker daemon address, e.g. unix:///var/run/docker.sock (env DOCKER_HOST); with it the node joins the swarm and runs container jobs, without it it runs tasks as processes")
	fs.StringVar(&cfg.SwarmRoot, "swarm-root", cfg.SwarmRoot, "directory where the node exposes its cache to its task containers")
	fs.StringVar(&cfg.TaskUser, "task-user", cfg.TaskUser, "user process tasks run as: name, uid or uid:gid (default: nobody when the agent runs as root; otherwise the agent's own user, confined by Landlock); never root")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	fs.Parse(os.Args[1:])

	log := logging.New("cloudml-agent", *level, *logJSON)
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(cfg)
	if err == nil {
		err = a.Run(ctx)
	}
	if err != nil {
		log.Error("agent stopped", "error", err)
		fmt.Fprintf(os.Stderr, "cloudml-agent: %v\n", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
