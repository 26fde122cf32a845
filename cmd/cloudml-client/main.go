// Command cloudml-client submits and watches CloudML jobs. See internal/cli.
package main

import (
	"os"

	"github.com/cloudml/cloudml/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
