package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cloudml/cloudml/internal/pki"
)

// Output formats of -o.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
)

const rootLong = `cloudml-client submits CloudML jobs to a coordinator and watches them.

Flags go anywhere on the line; --config, --coordinator and -o/--output
work on every command. Every connection is TLS with a client certificate
from the credential file that 'coordinator serve' writes for its admin
(~/.cloudml/config by default), or one an admin made with 'credential
create'. Output is a table, with extra columns for -o wide, or JSON for
-o json (logs: one JSON object per line).

Exit codes: 0 ok, 1 error, 2 usage or invalid job spec, and for logs -f and
status --watch: 3 the job failed, 4 it was cancelled. cluster up and scale
exit 1 when a machine failed or did not get ready within --timeout.`

// newRoot builds the command tree for one run.
func (a *App) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "cloudml-client",
		Short: "Submit and watch CloudML jobs",
		Long:  rootLong,
		Example: `  cloudml-client submit -f examples/linreg/cloudml.yaml
  cloudml-client logs -f JOB
  cloudml-client list -o json
  cloudml-client --coordinator 10.0.0.5:7070 cluster nodes`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return usageErrorf("give a command; see 'cloudml-client --help'")
		},
		PersistentPreRunE: a.checkGlobals,
		Annotations:       map[string]string{"group": "true"},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "coordinator", a.Getenv("CLOUDML_COORDINATOR"), "coordinator address host:port (env CLOUDML_COORDINATOR; default: the credential file's)")
	pf.StringVar(&a.config, "config", "", "credential file: who you are and where the coordinator is (env "+pki.ConfigEnv+"; default ~/.cloudml/config)")
	pf.StringVarP(&a.output, "output", "o", outTable, "output format: table, wide (more columns) or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outTable, outWide, outJSON}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(a.submitCmd(), a.listCmd(), a.statusCmd(), a.logsCmd(), a.cancelCmd(), a.deleteCmd(),
		a.resultsCmd(), a.clusterCmd(), a.imageCmd(), a.tokenCmd(), a.credentialCmd(), a.completionCmd(root))
	root.SetHelpCommand(helpCmd(root))
	// The root and the groups run only to say a subcommand is missing: their
	// usage shows the subcommand form alone.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}",
		`{{if and .Runnable (ne (index .Annotations "group") "true")}}`, 1))
	markRan(root)
	return root
}

// checkGlobals validates the global flags before any command runs.
func (a *App) checkGlobals(cmd *cobra.Command, _ []string) error {
	if cmd.Name() == "submit" && strings.Contains(a.output, "://") {
		// Before -o was global, submit's --output named the results bucket;
		// it is --output-bucket now, and a URL given to --output still is one.
		if err := cmd.Flags().Set("output-bucket", a.output); err != nil {
			return err
		}
		fmt.Fprintf(a.Stderr, "note: --output %s is now --output-bucket %s\n", a.output, a.output)
		a.output = outTable
	}
	if !slices.Contains([]string{outTable, outWide, outJSON}, a.output) {
		return usageErrorf("-o must be table, wide or json, not %q", a.output)
	}
	return nil
}

// markRan wraps every RunE so that its errors are told apart from cobra's.
func markRan(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if err := run(c, args); err != nil {
				return ranError{err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markRan(sub)
	}
}

// groupCmd is a command that only holds subcommands (cluster, image). A
// leaf may hold subcommands too and still run on its own (a later
// "cluster nodes rm" under "cluster nodes").
func groupCmd(use, short, long, example string, subs ...*cobra.Command) *cobra.Command {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = "'" + strings.Fields(use)[0] + " " + s.Name() + "'"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args:        cobra.ArbitraryArgs,
		Annotations: map[string]string{"group": "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return usageErrorf("%s needs a subcommand: %s", cmd.Name(), strings.Join(names, " or "))
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// helpCmd replaces cobra's help command, to give it an example.
func helpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "Help about any command",
		Long:  "Help shows the usage of any command, as COMMAND --help does.",
		Example: `  cloudml-client help submit
  cloudml-client help image rm`,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			cmd, _, err := root.Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if cmd == nil || err != nil || len(rest) > 0 {
				return usageErrorf("unknown help topic %q", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// completionCmd writes shell completion scripts.
func (a *App) completionCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Completion prints a script that teaches the shell cloudml-client's
commands and flags, and completes job ids and image names from the
coordinator.

  bash: add 'source <(cloudml-client completion bash)' to ~/.bashrc
        (needs the bash-completion package)
  zsh:  cloudml-client completion zsh > "${fpath[1]}/_cloudml-client"
  fish: cloudml-client completion fish > ~/.config/fish/completions/cloudml-client.fish`,
		Example: `  cloudml-client completion bash > /etc/bash_completion.d/cloudml-client
  source <(cloudml-client completion bash)`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(cmd.ValidArgs, args[0]) {
				return usageErrorf("completion needs one shell: bash, zsh or fish")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			default:
				return root.GenFishCompletion(out, true)
			}
		},
	}
}

// oneJob requires exactly one JOB argument.
func oneJob(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("%s needs exactly one JOB id (see 'cloudml-client list')", cmd.Name())
	}
	return nil
}

// minArgs requires at least one argument, described by what.
func minArgs(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageErrorf("%s needs at least one %s", cmd.CommandPath()[len("cloudml-client "):], what)
		}
		return nil
	}
}
