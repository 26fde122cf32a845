// Package logging builds the root hclog logger of each binary from its
// --log-level and --log-json flags; everything below receives it.
package logging

import (
	"os"

	"github.com/hashicorp/go-hclog"
)

// New returns the root logger for a program writing to stderr.
func New(name, level string, json bool) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(level),
		Output:     os.Stderr,
		JSONFormat: json,
	})
}
