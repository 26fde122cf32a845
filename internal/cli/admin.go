package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Admin commands: join tokens, client credentials, node removal. They take
// an admin credential (the one 'coordinator serve' writes).

func (a *App) tokenCmd() *cobra.Command {
	return groupCmd("token", "Join tokens agents register with (admin)",
		"A join token lets an agent register a node: it carries the coordinator's CA\n"+
			"fingerprint (the agent checks the coordinator before it sends anything) and a\n"+
			"secret the coordinator keeps only hashed. Tokens expire, are single-use\n"+
			"unless made otherwise, and can be revoked. Give one to an agent in a file\n"+
			"(--token-file) or the CLOUDML_JOIN_TOKEN environment variable, never argv.",
		`  cloudml-client token create
  cloudml-client token ls
  cloudml-client token revoke 3f9a1c0b2d4e`,
		a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
}

func (a *App) tokenCreateCmd() *cobra.Command {
	var o client.TokenOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a join token; it is printed once, on stdout",
		Long: "Create makes a join token and prints it on stdout, alone, so it can go\n" +
			"straight into a file. It works for --ttl (15m by default, 30 days at most)\n" +
			"and --uses registrations (1 by default; -1 for any number until it expires).",
		Example: `  cloudml-client token create > join-token        # one node, within 15 minutes
  cloudml-client token create --uses 10 --ttl 1h --label "lab machines"
  cloudml-client token create --max-slots 4        # nodes that register with it run 4 tasks at most`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateToken(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(resp)
			}
			fmt.Fprintln(a.Stdout, resp.GetToken())
			info := resp.GetInfo()
			fmt.Fprintf(a.Stderr, "join token %s: %s, expires in %s (%s)\n", info.GetId(), usesText(info), human(time.Until(info.GetExpireTime().AsTime())),
				info.GetExpireTime().AsTime().Local().Format(time.DateTime))
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.TTL, "ttl", 15*time.Minute, "how long the token works (at most 720h)")
	f.Int32Var(&o.Uses, "uses", 1, "how many nodes may register with it; -1 for any number until it expires")
	f.StringVar(&o.Label, "label", "", "a note shown in 'token ls'")
	f.Int32Var(&o.MaxSlots, "max-slots", 0, "most task slots a node registered with it may claim (default: the coordinator's cap)")
	return cmd
}

// usesText is "single-use", "3 uses (1 used)" or "any number of uses".
func usesText(t *cloudmlv1.JoinTokenInfo) string {
	switch t.GetUses() {
	case -1:
		return "any number of uses"
	case 1:
		return "single-use"
	}
	return fmt.Sprintf("%s (%d used)", plural(int(t.GetUses()), "use"), t.GetUsed())
}

func (a *App) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List join tokens (never their secrets)",
		Long: "Ls lists join tokens newest first: id, label, state (valid, expired, used,\n" +
			"revoked), uses, expiry and the nodes each registered. Tokens the local and\n" +
			"netns providers made for their agents are listed while they are valid.",
		Example: `  cloudml-client token ls
  cloudml-client token ls -o json`,
		Aliases: []string{"list"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			tokens, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(&cloudmlv1.ListJoinTokensResponse{Tokens: tokens})
			}
			t := newTable(a.Stdout)
			head := []string{"TOKEN", "LABEL", "STATE", "USES", "EXPIRES", "NODES"}
			if a.wide() {
				head = append(head, "CREATED", "BY")
			}
			t.row(head...)
			for _, tk := range tokens {
				uses := fmt.Sprintf("%d/%d", tk.GetUsed(), tk.GetUses())
				if tk.GetUses() < 0 {
					uses = fmt.Sprintf("%d/any", tk.GetUsed())
				}
				cells := []string{tk.GetId(), orDash(tk.GetLabel()), tk.GetState(), uses, untilText(tk.GetExpireTime().AsTime()), orDash(strings.Join(tk.GetNodes(), ","))}
				if a.wide() {
					cells = append(cells, since(tk.GetCreateTime()), orDash(tk.GetCreatedBy()))
				}
				t.row(cells...)
			}
			return t.flush()
		},
	}
}

// untilText is "in 14m59s" or "3m02s ago".
func untilText(t time.Time) string {
	if d := time.Until(t); d > 0 {
		return "in " + human(d)
	}
	return human(time.Since(t)) + " ago"
}

func (a *App) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID...",
		Short: "Make join tokens unusable; nodes they registered stay",
		Long: "Revoke makes join tokens unusable at once. Nodes that registered with them\n" +
			"keep their certificates (remove a node with 'cluster nodes rm').",
		Example: `  cloudml-client token revoke 3f9a1c0b2d4e`,
		Args:    minArgs("token id (see 'cloudml-client token ls')"),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return eachArg(cmd.Context(), a, ids, "revoked", c.RevokeToken, func(id string, _ *cloudmlv1.RevokeJoinTokenResponse) {
				fmt.Fprintf(a.Stdout, "revoked join token %s\n", id)
			})
		},
	}
}

func (a *App) credentialCmd() *cobra.Command {
	return groupCmd("credential", "Client credentials: who may call the coordinator (admin)",
		"A credential is one file: the coordinator's address and CA, a client\n"+
			"certificate and its key. 'coordinator serve' writes the admin's; 'credential\n"+
			"create' issues more (a teammate's laptop, a CI job). The key is made here and\n"+
			"never sent. A client credential may submit and watch jobs; an admin one may\n"+
			"also manage tokens, credentials and nodes. Revoking one refuses it at once.",
		`  cloudml-client credential create alice --file alice.config
  cloudml-client credential ls
  cloudml-client credential revoke alice`,
		a.credentialCreateCmd(), a.credentialListCmd(), a.credentialRevokeCmd())
}

func (a *App) credentialCreateCmd() *cobra.Command {
	var o client.CredentialOptions
	var file string
	var force bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Issue a client credential and write it to a file (mode 0600)",
		Long: "Create issues a credential named NAME and writes it, key included, to --file\n" +
			"(NAME.config by default) with mode 0600. Give that file to its user, who\n" +
			"passes it with --config or CLOUDML_CONFIG (or puts it at ~/.cloudml/config).",
		Example: `  cloudml-client credential create alice
  cloudml-client credential create ci --file /secrets/cloudml.config --ttl 720h
  cloudml-client credential create bob --admin --coordinator-addr coord.example.com:7443`,
		Args: exactArg("credential name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if file == "" {
				file = name + ".config"
			}
			if _, err := os.Stat(file); err == nil && !force {
				return usageErrorf("%s exists; pick another --file or pass --force", file)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			cred, info, err := c.CreateCredential(cmd.Context(), name, o)
			if err != nil {
				return err
			}
			if err := cred.Save(file); err != nil {
				return fmt.Errorf("write the credential (it was issued; revoke it with 'cloudml-client credential revoke %s'): %w", name, err)
			}
			if a.json() {
				return a.printJSON(info)
			}
			fmt.Fprintf(a.Stdout, "wrote %s credential %s to %s (expires %s); its user runs: cloudml-client --config %s list\n",
				info.GetRole(), name, file, info.GetExpireTime().AsTime().Local().Format(time.DateOnly), file)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "where to write the credential (default NAME.config)")
	f.BoolVar(&force, "force", false, "overwrite --file if it exists")
	f.BoolVar(&o.Admin, "admin", false, "an admin credential (tokens, credentials, node removal) instead of a client one")
	f.DurationVar(&o.TTL, "ttl", 0, "lifetime (default 8760h, a year)")
	f.StringVar(&o.Coordinator, "coordinator-addr", "", "the coordinator address to write into it (default: the one this client dials)")
	return cmd
}

func (a *App) credentialListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List client credentials: name, role, state, expiry",
		Example: `  cloudml-client credential ls
  cloudml-client credential ls -o wide`,
		Aliases: []string{"list"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			creds, err := c.Credentials(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(&cloudmlv1.ListCredentialsResponse{Credentials: creds})
			}
			t := newTable(a.Stdout)
			head := []string{"NAME", "ROLE", "STATE", "EXPIRES"}
			if a.wide() {
				head = append(head, "CREATED", "BY", "SERIAL")
			}
			t.row(head...)
			for _, cr := range creds {
				cells := []string{cr.GetName(), cr.GetRole(), cr.GetState(), untilText(cr.GetExpireTime().AsTime())}
				if a.wide() {
					cells = append(cells, since(cr.GetCreateTime()), orDash(cr.GetCreatedBy()), cr.GetSerial())
				}
				t.row(cells...)
			}
			return t.flush()
		},
	}
}

func (a *App) credentialRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME...",
		Short: "Refuse credentials from now on, on every call",
		Example: `  cloudml-client credential revoke alice
  cloudml-client credential revoke old-ci -o json`,
		Args: minArgs("credential name (see 'cloudml-client credential ls')"),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return eachArg(cmd.Context(), a, names, "revoked", c.RevokeCredential, func(name string, _ *cloudmlv1.RevokeCredentialResponse) {
				fmt.Fprintf(a.Stdout, "revoked credential %s\n", name)
			})
		},
	}
}

func (a *App) nodeRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NODE...",
		Short: "Remove nodes: refuse their certificates, reschedule their tasks (admin)",
		Long: "Rm removes nodes at once: their certificates are refused on every call, their\n" +
			"sessions end, the tasks they ran are rescheduled elsewhere, and they stay out\n" +
			"(to come back, an agent needs a new join token and becomes a new node).",
		Example: `  cloudml-client cluster nodes rm node-3`,
		Aliases: []string{"remove"},
		Args:    minArgs("node id (see 'cloudml-client cluster nodes')"),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return eachArg(cmd.Context(), a, ids, "removed", c.RemoveNode, func(id string, r *cloudmlv1.RemoveNodeResponse) {
				fmt.Fprintf(a.Stdout, "removed node %s; %s rescheduled\n", nodeLabel(id, r.GetNode()), plural(int(r.GetAttemptsRescheduled()), "task"))
			})
		},
	}
}

// exactArg accepts exactly one argument.
func exactArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageErrorf("%s needs exactly one %s", cmd.CommandPath()[len("cloudml-client "):], what)
		}
		return nil
	}
}
