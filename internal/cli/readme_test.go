package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
)

// readmeCommand matches a client command line of a README code block:
// cloudml-client (or bin/cloudml-client) followed by a command or flag.
var readmeCommand = regexp.MustCompile(`^(?:bin/)?cloudml-client\s+[a-z-]`)

// readmeNoRun marks a fenced code block whose commands the test does not
// run, in its info string (```sh no-run): they need what the test cannot
// give, such as a DigitalOcean account.
const readmeNoRun = "no-run"

// readmeCommands returns the client command lines of the README's fenced
// code blocks, in order, without their "# comments", skipping the blocks
// marked readmeNoRun.
func readmeCommands(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	inBlock, skip := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if info, ok := strings.CutPrefix(line, "```"); ok {
			inBlock = !inBlock
			skip = inBlock && slices.Contains(strings.Fields(info), readmeNoRun)
			continue
		}
		if !inBlock || skip || !readmeCommand.MatchString(line) {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if i := strings.Index(line, " > "); i >= 0 { // a redirection is the shell's
			line = strings.TrimSpace(line[:i])
		}
		cmds = append(cmds, line)
	}
	return cmds
}

// TestReadmeCommandsRun runs every client command in README.md's code
// blocks, in order, against an in-process coordinator with two agents
// (process runtime, a file:// bucket), from the repository root, as
// written except for these substitutions (blocks marked ```sh no-run are
// not run):
//
//   - bin/cloudml-client is the client run in this process (App.Run,
//     dialled to the coordinator); the line's "# comment" is dropped and
//     its words are split on spaces (the README's commands quote nothing);
//   - JOB and JOB... are the id the first submit printed (the linreg sweep);
//   - DIR is a new temporary directory (and DIR/x a file in it);
//   - NAME and NAME... are an image the test pushed to the coordinator
//     first (a fake `docker save` archive through client.PushImage), as
//     submit --image would from a local Docker;
//   - TOKEN_ID is the id of the join token the last `token create` printed,
//     and NODE is node-2;
//   - a shell redirection (` > file`) is dropped: it is the shell's;
//   - list --watch, which runs until interrupted, is interrupted (as
//     Ctrl-C would) once it printed a snapshot;
//   - the machine commands (cluster up, scale, down, gc, machines) run
//     against a second coordinator, started at the first of them, whose
//     local provider starts real cloudml-agent processes (built for the
//     test), as `coordinator serve --provider local` would.
//
// Every command must exit 0; some outputs are checked too.
func TestReadmeCommandsRun(t *testing.T) {
	testutil.Short(t)
	testutil.NeedBinary(t, "octave-cli")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmds := readmeCommands(t, filepath.Join(root, "README.md"))
	if len(cmds) < 10 || !strings.Contains(cmds[0], "submit") {
		t.Fatalf("found %d client commands in README.md, the first %q; want a submit first and more than 10", len(cmds), cmds)
	}
	p := startCluster(t, 2)
	// `cluster nodes rm NODE` removes node-2: its agent, refused, registers
	// again with its used token and ends, if it gets there before Close.
	p.c.ExpectAgentError("join token refused")
	t.Chdir(root)

	const name = "readme/box:1"
	id, archive := testutil.FakeImageArchive(`{"readme":1}`, 1<<10)
	cfg := client.DefaultConfig()
	cfg.Address, cfg.DialOptions = inproc.Target, p.c.DialOptions()
	cfg.Docker = func() (client.DockerImages, error) { return archiveDocker{id, archive}, nil }
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PushImage(t.Context(), name, client.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	job, tokenID := "", ""
	dir := t.TempDir()
	var machines *localCoordinator
	for _, line := range cmds {
		words := strings.Fields(line)[1:]
		for i, w := range words {
			switch w {
			case "JOB", "JOB...":
				words[i] = job
			case "DIR":
				words[i] = dir
			case "NAME", "NAME...":
				words[i] = name
			case "TOKEN_ID":
				words[i] = tokenID
			case "NODE":
				words[i] = "node-2"
			default:
				if rest, ok := strings.CutPrefix(w, "DIR/"); ok {
					words[i] = filepath.Join(dir, rest)
				}
			}
		}
		var r ran
		if machineCommand(words) {
			if machines == nil {
				machines = startLocal(t)
			}
			r = machines.run(t, words...)
		} else {
			r = runReadme(t, p, words)
		}
		t.Logf("%s\nexit %d\n%s%s", line, r.code, clip(r.stdout), clip(r.stderr))
		if r.code != ExitOK {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", line, r.code, r.stdout, r.stderr)
		}
		switch {
		case job == "" && words[0] == "submit":
			job = strings.TrimSpace(r.stdout)
		case words[0] == "token" && words[1] == "create":
			tok, err := pki.ParseToken(r.stdout)
			if err != nil {
				t.Fatalf("%s printed no join token: %v\n%s", line, err, r.stdout)
			}
			tokenID = tok.ID
		case words[0] == "credential" && words[1] == "create":
			if _, err := client.ConfigFromFile(words[4]); err != nil {
				t.Errorf("%s wrote no usable credential: %v", line, err)
			}
		case words[0] == "status":
			if !strings.Contains(r.stdout, "job "+job+": succeeded, 12 tasks") || !strings.Contains(r.stdout, "node-1 (host-1)") {
				t.Errorf("%s did not follow the job to its end:\n%s", line, r.stdout)
			}
		case words[0] == "results" && len(words) == 2:
			if !strings.Contains(r.stdout, "best: task") {
				t.Errorf("%s shows no best task:\n%s", line, r.stdout)
			}
		case machineCommand(words) && words[1] == "up" && !contains(words, "--dry-run"):
			if strings.Count(r.stdout, " ready ") != 2 {
				t.Errorf("%s did not bring 2 machines up:\n%s", line, r.stdout)
			}
		case machineCommand(words) && words[1] == "down":
			if n := machines.agents(t); n != 0 {
				t.Errorf("%s left %d agents running", line, n)
			}
		case words[0] == "image" && words[1] == "ls":
			if !strings.Contains(r.stdout, name) {
				t.Errorf("%s does not list %s:\n%s", line, name, r.stdout)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "task-0", "metrics.json")); err != nil {
		t.Errorf("results --download DIR: %v", err)
	}
}

// TestReadmeCommandsSkipNoRun checks that a block marked no-run gives no
// command, and that the blocks around it still do.
func TestReadmeCommandsSkipNoRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	md := "```\ncloudml-client list # jobs\n```\n\n```sh no-run\ncloudml-client cluster up --region fra1\n```\n\n```sh\nbin/cloudml-client status JOB\n```\n"
	if err := os.WriteFile(path, []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
	got, want := readmeCommands(t, path), []string{"cloudml-client list", "bin/cloudml-client status JOB"}
	if !slices.Equal(got, want) {
		t.Errorf("readmeCommands = %q, want %q", got, want)
	}
}

// machineCommand reports whether a README command works on machines,
// which need a provider that makes them.
func machineCommand(words []string) bool {
	return len(words) > 1 && words[0] == "cluster" && slices.Contains([]string{"up", "scale", "down", "gc", "machines"}, words[1])
}

// runReadme runs one README command; a list --watch is interrupted once
// it printed.
func runReadme(t *testing.T, p *inProcess, args []string) ran {
	t.Helper()
	var out, errb testutil.SyncBuffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		Configure: func(c *client.Config) { c.Address, c.DialOptions = inproc.Target, p.c.DialOptions() }}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	codes := make(chan int, 1)
	go func() { codes <- a.Run(ctx, args) }()
	if args[0] == "list" && (contains(args, "--watch") || contains(args, "-w")) {
		for out.Len() == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}
	code := <-codes
	return ran{code, out.String(), errb.String()}
}

// clip shortens long output for the test log.
func clip(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "...\n"
	}
	return s
}

func contains(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

// archiveDocker is a local Docker with one image, saved as archive.
type archiveDocker struct {
	id      string
	archive []byte
}

func (d archiveDocker) ImageInspect(context.Context, string, ...dockerclient.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: d.id, Size: int64(len(d.archive))}, nil
}

func (d archiveDocker) ImageSave(context.Context, []string, ...dockerclient.ImageSaveOption) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(d.archive)), nil
}

func (d archiveDocker) Close() error { return nil }
