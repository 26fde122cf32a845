// Command cloudml-agent runs on every node: it dials the coordinator, holds a
// session, and stages, runs and reports the tasks it is given. See agent/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudml/cloudml/agent"
	"github.com/cloudml/cloudml/agent/dropletmeta"
	"github.com/cloudml/cloudml/internal/logging"
	"github.com/cloudml/cloudml/internal/pki"
)

func main() {
	cfg := agent.DefaultConfig()
	fs := flag.NewFlagSet("cloudml-agent", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `cloudml-agent: the CloudML node agent.

It registers with the coordinator using a join token (from --token-file or
the CLOUDML_JOIN_TOKEN environment variable, never argv): it checks the
coordinator against the CA fingerprint in the token, then trades the token
for a node certificate kept in --work-dir/identity (key 0600), renewed
before it expires. A restart reuses the certificate. Then it holds a
session and runs the tasks it is assigned: stages code and data from the
bucket, runs the command, ships its logs, uploads results. It exits with
status 3 when it has no certificate and its join token is missing or
refused (restarting cannot help), 1 on other errors.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.CoordinatorAddr, "coordinator", envOr("CLOUDML_COORDINATOR", "127.0.0.1:7070"), "coordinator address host:port (env CLOUDML_COORDINATOR)")
	tokenFile := fs.String("token-file", "", "file holding the join token ('cloudml-client token create'); or set "+pki.JoinTokenEnv)
	fs.StringVar(&cfg.WorkDir, "work-dir", cfg.WorkDir, "directory for the node identity, the staging cache and task directories")
	fs.IntVar(&cfg.Slots, "slots", cfg.Slots, "tasks to run at once (default: number of CPUs)")
	fs.StringVar(&cfg.Hostname, "hostname", cfg.Hostname, "hostname to report (with --metadata-url: the droplet's name)")
	fs.StringVar(&cfg.Address, "address", cfg.Address, "address to advertise to peers (with --metadata-url: the droplet's private IPv4 address, else its public one)")
	fs.StringVar(&cfg.MetadataURL, "metadata-url", os.Getenv("CLOUDML_METADATA_URL"), "base URL of the DigitalOcean droplet metadata service ("+dropletmeta.DefaultURL+"; env CLOUDML_METADATA_URL): report the droplet id at registration, for the coordinator to check, and take --hostname and --address from it unless given; default: no lookup")
	fs.StringVar(&cfg.Docker, "docker", os.Getenv("DOCKER_HOST"), "Docker daemon address, e.g. unix:///var/run/docker.sock (env DOCKER_HOST); with it the node joins the swarm and runs container jobs, without it it runs tasks as processes")
	fs.StringVar(&cfg.SwarmRoot, "swarm-root", cfg.SwarmRoot, "directory where the node exposes its cache to its task containers")
	fs.StringVar(&cfg.TaskUser, "task-user", cfg.TaskUser, "user process tasks run as: name, uid or uid:gid (default: nobody when the agent runs as root; otherwise the agent's own user, confined by Landlock); never root")
	fs.StringVar(&cfg.BucketAuth, "bucket-auth", agent.BucketAuthDefault, "how to authenticate to gs:// buckets: default (this machine's application default credentials) or coordinator (short-lived tokens, each limited to one bucket, that the coordinator lends over its connection; for machines with no Google credential, such as droplets)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	fs.Parse(os.Args[1:])
	if cfg.MetadataURL != "" {
		// The droplet's own name and address, unless given.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["hostname"] {
			cfg.Hostname = ""
		}
		if !set["address"] {
			cfg.Address = ""
		}
	}
	token, err := joinToken(*tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloudml-agent: %v\n", err)
		os.Exit(2)
	}
	cfg.JoinToken = token

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
		if errors.Is(err, agent.ErrBadToken) || errors.Is(err, agent.ErrNoToken) {
			os.Exit(exitNoToken)
		}
		os.Exit(1)
	}
}

// exitNoToken is the exit status when the node has no certificate and its
// join token is missing or refused: restarting cannot help, so the unit in
// the coordinator's user-data does not restart on it
// (RestartPreventExitStatus).
const exitNoToken = 3

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// joinToken reads the token file, else the environment; the variable is
// then removed so that nothing the agent starts inherits it.
func joinToken(file string) (string, error) {
	env := os.Getenv(pki.JoinTokenEnv)
	os.Unsetenv(pki.JoinTokenEnv)
	if file == "" {
		return strings.TrimSpace(env), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the join token: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}
