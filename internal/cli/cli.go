package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/pki"
)

// Exit codes. Scripts can rely on them.
const (
	// ExitOK: the command did what was asked (logs -f, status --watch: the
	// job succeeded).
	ExitOK = 0
	// ExitError: the command failed (coordinator unreachable, job not found, ...).
	ExitError = 1
	// ExitUsage: bad flags or arguments, an unknown command, an invalid job spec.
	ExitUsage = 2
	// ExitJobFailed: logs -f or status --watch followed a job that failed.
	ExitJobFailed = 3
	// ExitJobCancelled: logs -f or status --watch followed a job that was cancelled.
	ExitJobCancelled = 4
)

// App is one invocation of the client.
type App struct {
	// Stdout and Stderr receive the output; progress bars and in-place
	// redraws appear only when they are terminals.
	Stdout, Stderr io.Writer
	// Getenv reads the environment (tests replace it).
	Getenv func(string) string
	// Configure, if set, adjusts the client's configuration before the
	// client is made (tests dial an in-process coordinator with it).
	Configure func(*client.Config)
	// WatchInterval is how often --watch reads the coordinator; default 1s.
	WatchInterval time.Duration

	addr   string // --coordinator
	config string // --config
	output string // -o
	c      *client.Client
}

// errUsage marks errors that exit with ExitUsage.
var errUsage = errors.New("usage")

// usageErrorf is a usage error with a message.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errUsage)...)
}

// exitError carries a specific exit code out of a command; it prints nothing.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// ranError marks an error a command's RunE returned, as opposed to one of
// cobra's own (unknown flag or command, bad arguments), which are usage
// errors.
type ranError struct{ err error }

func (e ranError) Error() string { return e.err.Error() }
func (e ranError) Unwrap() error { return e.err }

// Main runs the client with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &App{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	return app.Run(ctx, args)
}

// Run runs one command line and maps its outcome to an exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	root := a.newRoot()
	root.SetArgs(args)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if a.c != nil {
		a.c.Close()
		a.c = nil
	}
	return a.exitCode(cmd, err)
}

func (a *App) exitCode(cmd *cobra.Command, err error) int {
	var ee exitError
	var ran ranError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case !errors.As(err, &ran), errors.Is(err, errUsage), errors.Is(err, client.ErrInvalidSpec):
		msg := strings.TrimSuffix(err.Error(), ": usage")
		fmt.Fprintf(a.Stderr, "error: %s\n", msg)
		if cmd != nil && !errors.Is(err, client.ErrInvalidSpec) {
			fmt.Fprintf(a.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ExitUsage
	default:
		fmt.Fprintf(a.Stderr, "error: %s\n", explain(err, a.addr))
		return ExitError
	}
}

// client returns the coordinator client, made on first use: help and
// usage errors need no coordinator.
func (a *App) client() (*client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	cfg, err := a.clientConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

// clientConfig is the client configuration the global flags describe: the
// credential file (--config, CLOUDML_CONFIG, ~/.cloudml/config) gives the
// TLS identity and, unless --coordinator or CLOUDML_COORDINATOR says
// otherwise, the address.
func (a *App) clientConfig() (client.Config, error) {
	if a.Configure != nil { // tests reach an in-process or fake coordinator
		cfg := client.DefaultConfig()
		cfg.Address = a.addr
		a.Configure(&cfg)
		return cfg, nil
	}
	path := a.configPath()
	cfg, err := client.ConfigFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, fmt.Errorf("no credential file at %s: 'coordinator serve' writes one for its admin there (see its --admin-config), "+
			"or an admin makes one for you with 'cloudml-client credential create NAME'; point at another with --config or %s", path, pki.ConfigEnv)
	}
	if err != nil {
		return cfg, fmt.Errorf("credential file %s: %w", path, err)
	}
	if a.addr != "" {
		cfg.Address = a.addr
	}
	a.addr = cfg.Address
	return cfg, nil
}

// configPath is the credential file: --config, else $CLOUDML_CONFIG, else
// ~/.cloudml/config.
func (a *App) configPath() string {
	if a.config != "" {
		return a.config
	}
	if p := a.Getenv(pki.ConfigEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cloudml", "config")
	}
	return filepath.Join(home, ".cloudml", "config")
}

func (a *App) watchInterval() time.Duration {
	if a.WatchInterval > 0 {
		return a.WatchInterval
	}
	return time.Second
}

// machineInterval is how often cluster up, scale and down read the
// machines: WatchInterval when set, else 250ms, a read being one small
// call; client.WatchMachines reads five times as often during the last
// step (the nodes joining the swarm), which is what the user waits for.
func (a *App) machineInterval() time.Duration {
	if a.WatchInterval > 0 {
		return a.WatchInterval
	}
	return 250 * time.Millisecond
}
