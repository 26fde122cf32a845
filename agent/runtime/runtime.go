// Package runtime starts a task's command on the node. The agent talks to
// the Runtime interface only: the process runtime here runs the command as a
// process group, kept away from the agent's secrets (see ProcessConfig for
// how, and HostEnv for the only variables of the agent's environment a task
// inherits); container tasks plug in behind the same interface.
package runtime

import (
	"context"
	"errors"
	"io"
	"os"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrCommandNotFound is wrapped when the task's command cannot be resolved.
var ErrCommandNotFound = errors.New("command not found")

// Spec is everything a runtime needs to start one attempt.
type Spec struct {
	// Ref names the attempt (for labels and logs).
	Ref *cloudmlv1.TaskRef
	// Command is the argv; Command[0] is resolved against Dir and PATH.
	Command []string
	// Env is the complete environment, "KEY=value" entries.
	Env []string
	// Dir is the working directory (the staged code).
	Dir string
	// Writable are the directories the task writes (its working, output,
	// home and temporary directories); the process runtime hands them to
	// the task's user.
	Writable []string
	// Image is the container image; ignored by the process runtime.
	Image string
	// Resources are the task's reservations.
	Resources *cloudmlv1.Resources
}

// Runtime starts processes.
type Runtime interface {
	// Name is what the node reports as its runtime ("process", "docker").
	Name() string
	// Start starts spec's command. ctx bounds only the start itself; stop a
	// running process with Signal.
	Start(ctx context.Context, spec Spec) (Process, error)
}

// Process is one started command.
type Process interface {
	// Stdout is the command's standard output; it ends with io.EOF.
	Stdout() io.Reader
	// Stderr is the command's standard error; it ends with io.EOF.
	Stderr() io.Reader
	// Wait returns the exit code (-1 when killed by a signal). Call it after
	// both readers hit EOF.
	Wait() (exitCode int, err error)
	// Signal delivers sig to the command and everything it started.
	Signal(sig os.Signal) error
}
