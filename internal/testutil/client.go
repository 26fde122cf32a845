package testutil

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// ClientResult is what one cloudml-client run printed and its exit code.
type ClientResult struct {
	Stdout, Stderr string
	Code           int
}

// Client runs the cloudml-client binary at bin against the coordinator at
// addr (env nil: this process's environment), bounded to 5 minutes.
type Client struct {
	Bin, Addr string
	Env       []string
}

// Run runs the client with args and returns its output and exit code; it
// fails t only when the binary cannot run at all.
func (c Client) Run(t testing.TB, args ...string) ClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, append([]string{"--coordinator", c.Addr}, args...)...)
	cmd.Env = c.Env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cloudml-client %v: %v", args, err)
	}
	return ClientResult{out.String(), errb.String(), code}
}

// Must runs the client and fails t unless it exits 0; it returns stdout.
func (c Client) Must(t testing.TB, args ...string) string {
	t.Helper()
	r := c.Run(t, args...)
	if r.Code != 0 {
		t.Fatalf("cloudml-client %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}
