package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Exit codes. Scripts can rely on them.
const (
	// ExitOK: the command did what was asked (logs -f: the job succeeded).
	ExitOK = 0
	// ExitError: the command failed (coordinator unreachable, job not found, ...).
	ExitError = 1
	// ExitUsage: bad flags or arguments.
	ExitUsage = 2
	// ExitJobFailed: logs -f followed a job that failed.
	ExitJobFailed = 3
	// ExitJobCancelled: logs -f followed a job that was cancelled.
	ExitJobCancelled = 4
)

// DefaultCoordinator is used when neither --coordinator nor CLOUDML_COORDINATOR is set.
const DefaultCoordinator = "127.0.0.1:7070"

const usage = `cloudml-client talks to a CloudML coordinator.

Usage:
  cloudml-client [global flags] COMMAND [flags] [args]

Commands:
  submit    submit a job from cloudml.yaml (-f) or from flags; prints the job id
  list      list jobs, newest first
  status    show a job and every task: state, node, attempt, exit code, reason
  logs      print a job's output (-f to follow until it ends; --task N for one task)
  cancel    cancel a job
  delete    forget ended jobs and their stored logs (results in the bucket stay)
  results   show params beside metrics, best first (--download DIR to fetch files)
  cluster   cluster commands: "cluster nodes" lists the nodes
  image     images the coordinator keeps for nodes without a registry:
            "image ls", "image rm NAME..."

Global flags:
  --config FILE        credential file (env CLOUDML_CONFIG, default ~/.cloudml/config)
  --coordinator ADDR   coordinator address (env CLOUDML_COORDINATOR, default: the credential's)
  -o table|json        output format (default table)

Exit codes: 0 ok, 1 error, 2 usage, 3 the followed job failed, 4 it was cancelled.
Run "cloudml-client COMMAND --help" for a command's flags.
`

// App is one invocation of the client.
type App struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (tests replace it).
	Getenv func(string) string

	addr   string
	config string
	output string
	conn   *grpc.ClientConn
	jobs   cloudmlv1.JobServiceClient
	nodes  cloudmlv1.ClusterServiceClient
}

// errUsage marks errors that should exit with ExitUsage.
var errUsage = errors.New("usage")

// exitError carries a specific exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the client with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &App{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	return app.Run(ctx, args)
}

// Run parses global flags, runs one command and maps its error to an exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("cloudml-client", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	fs.Usage = func() { fmt.Fprint(a.Stderr, usage) }
	fs.StringVar(&a.addr, "coordinator", a.Getenv("CLOUDML_COORDINATOR"), "coordinator address")
	fs.StringVar(&a.config, "config", "", "credential file")
	fs.StringVar(&a.output, "o", "table", "output format: table or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if a.output != "table" && a.output != "json" {
		fmt.Fprintf(a.Stderr, "error: -o must be table or json, not %q\n", a.output)
		return ExitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(a.Stderr, usage)
		return ExitUsage
	}
	cmd, ok := a.commands()[rest[0]]
	if !ok {
		fmt.Fprintf(a.Stderr, "error: unknown command %q\n\n%s", rest[0], usage)
		return ExitUsage
	}
	defer a.close()
	err := cmd(ctx, rest[1:])
	return a.exitCode(err)
}

func (a *App) commands() map[string]func(context.Context, []string) error {
	return map[string]func(context.Context, []string) error{
		"submit":  a.submit,
		"list":    a.list,
		"status":  a.status,
		"logs":    a.logs,
		"cancel":  a.cancel,
		"delete":  a.delete,
		"results": a.results,
		"cluster": a.cluster,
		"image":   a.image,
	}
}

func (a *App) exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(a.Stderr, "error: %s\n", strings.TrimSuffix(err.Error(), ": usage"))
		return ExitUsage
	default:
		fmt.Fprintf(a.Stderr, "error: %s\n", explain(err, a.addr))
		return ExitError
	}
}

// connect dials the coordinator lazily: help and usage errors need no server.
// The credential file (--config, CLOUDML_CONFIG, ~/.cloudml/config) gives
// the TLS identity and, unless --coordinator or CLOUDML_COORDINATOR says
// otherwise, the address.
func (a *App) connect() error {
	if a.conn != nil {
		return nil
	}
	path := a.config
	if path == "" {
		path = pki.DefaultConfigPath()
	}
	cred, err := pki.LoadCredential(path)
	if err != nil {
		return fmt.Errorf("no usable credential at %s (%w): 'coordinator serve' writes one for its admin; a teammate gets one from 'cloudml-client credential create NAME'", path, err)
	}
	tlsCfg, err := cred.TLS()
	if err != nil {
		return fmt.Errorf("credential %s: %w", path, err)
	}
	if a.addr == "" {
		a.addr = cred.Coordinator
	}
	conn, err := grpc.NewClient(a.addr, append(grpcopt.Dial(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
	if err != nil {
		return fmt.Errorf("coordinator address %q: %w", a.addr, err)
	}
	a.conn = conn
	a.jobs = cloudmlv1.NewJobServiceClient(conn)
	a.nodes = cloudmlv1.NewClusterServiceClient(conn)
	return nil
}

func (a *App) close() {
	if a.conn != nil {
		a.conn.Close()
	}
}

// callTimeout bounds every unary call.
const callTimeout = 30 * time.Second

func unary(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// newFlags makes a command's flag set with a help text.
func (a *App) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.Stderr, "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a command's flags, allowing flags after positional arguments
// ("logs JOB -f"); everything after "--" is positional as written. Errors
// become usage errors.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", fs.Name(), errUsage)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(append(pos, "--"), rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// oneJobArg returns the single JOB argument of a command.
func oneJobArg(name string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("%s needs exactly one JOB id (see 'cloudml-client list'): %w", name, errUsage)
	}
	return pos[0], nil
}
