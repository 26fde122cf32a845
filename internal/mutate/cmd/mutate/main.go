// Command mutate runs mutation testing on the packages that hold CloudML's
// guarantees (internal/mutate.Targets) and prints, per package, mutants
// killed, timed out, survived and not covered, then every survivor with
// its source line. It exits 1 when a package kills less than 85% of its
// covered mutants. For developers:
//
//	make mutate                          # every target (tens of minutes)
//	make mutate-quick                    # lines changed since main, in targets that changed
//	go run ./internal/mutate/cmd/mutate -only internal/jobspec
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudml/cloudml/internal/mutate"
)

func main() {
	cfg := mutate.DefaultConfig()
	fs := flag.NewFlagSet("mutate", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mutate [-diff REF] [-only DIR,...] [-workers N] [-reports DIR [-tally]]\n\nMutation testing (gremlins) on: %s.\nSurvivors no test can kill are listed with a reason in internal/mutate/equivalent.txt.\n\n", strings.Join(targetDirs(), ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Diff, "diff", "", "quick mode: only lines changed since this git ref (merge base), only in targets with changed source")
	only := fs.String("only", "", "comma-separated target directories to run (default: all)")
	fs.IntVar(&cfg.Workers, "workers", 0, "mutants tested at once (default: one per CPU)")
	fs.StringVar(&cfg.Reports, "reports", "", "keep gremlins' JSON report of each target in this directory")
	fs.BoolVar(&cfg.Tally, "tally", false, "run nothing: judge the reports kept in -reports again (after editing equivalent.txt)")
	fs.Parse(os.Args[1:])
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rs, err := mutate.Run(ctx, cfg)
	if len(rs) > 0 {
		fmt.Println()
		mutate.WriteTable(os.Stdout, rs, mutate.FileLines(cfg.Root))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
	for _, r := range rs {
		if !r.Met() {
			fmt.Fprintf(os.Stderr, "mutate: %s kills %.1f%% of covered mutants, goal %.0f%%: kill the survivors above with tests, or name true equivalents in internal/mutate/equivalent.txt\n", r.Target.Dir, 100*r.Rate(), 100*mutate.Goal)
			os.Exit(1)
		}
	}
}

func targetDirs() []string {
	var out []string
	for _, t := range mutate.Targets {
		out = append(out, t.Dir)
	}
	return out
}
