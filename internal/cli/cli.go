package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudml/cloudml/client"
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

// DefaultCoordinator is used when neither --coordinator nor CLOUDML_COORDINATOR is set.
const DefaultCoordinator = client.DefaultAddress

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
	cfg := a.clientConfig()
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

// clientConfig is the client configuration the global flags describe.
func (a *App) clientConfig() client.Config {
	cfg := client.DefaultConfig()
	cfg.Address = a.addr
	if a.Configure != nil {
		a.Configure(&cfg)
	}
	return cfg
}

func (a *App) watchInterval() time.Duration {
	if a.WatchInterval > 0 {
		return a.WatchInterval
	}
	return time.Second
}
