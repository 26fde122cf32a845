package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Machine commands: cluster up, scale, down, gc and machines. A node is an
// agent that registered (cluster nodes); a machine is what the
// coordinator's provider made for one (a droplet, a local agent process),
// listed from the moment it is asked for until the provider confirms it
// deleted. They take an admin credential.

// defaultMachineTimeout bounds how long up, scale and down wait.
const defaultMachineTimeout = 20 * time.Minute

// scaleFlags are the flags of cluster up and cluster scale.
type scaleFlags struct {
	o          client.ScaleOptions
	minNodes   int32
	idleDelete time.Duration
	timeout    time.Duration
	noWait     bool
}

func (f *scaleFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Int32Var(&f.o.Nodes, "nodes", 0, "how many machines the pool should have")
	fs.StringVar(&f.o.Pool, "pool", "", `the pool: machines of one size (default "default")`)
	fs.StringVar(&f.o.Size, "size", "", "the machines' size as the provider names it, e.g. s-2vcpu-4gb (default: the pool's, else the provider's)")
	fs.StringVar(&f.o.Region, "region", "", "refuse unless the provider makes the machines in this region, e.g. fra1 (the coordinator's --do-region: one cluster is one region)")
	fs.BoolVar(&f.o.DryRun, "dry-run", false, "show what would be created (the user-data with its secret masked, the cost) and create nothing")
	fs.Float64Var(&f.o.MaxHourlyCost, "max-hourly-cost", 0, "refuse if the cluster would cost more than this many US dollars an hour (0: no limit)")
	fs.Int32Var(&f.minNodes, "min-nodes", 0, "how many machines --idle-delete leaves in the pool (default: the pool's, 0 at first)")
	fs.DurationVar(&f.idleDelete, "idle-delete", 0, "delete machines that ran no task for this long, down to --min-nodes (0: never; default: the pool's, else the coordinator's)")
	fs.DurationVar(&f.timeout, "timeout", defaultMachineTimeout, "how long to wait for the machines")
	fs.BoolVar(&f.noWait, "no-wait", false, "return once the machines are asked for; follow them with 'cluster machines'")
}

// options fills what only flags given on the line set.
func (f *scaleFlags) options(cmd *cobra.Command) (client.ScaleOptions, error) {
	o := f.o
	if !cmd.Flags().Changed("nodes") {
		return o, usageErrorf("%s needs --nodes N", cmd.Name())
	}
	if o.Nodes < 0 {
		return o, usageErrorf("--nodes must not be negative, got %d", o.Nodes)
	}
	if cmd.Flags().Changed("min-nodes") {
		o.MinNodes = &f.minNodes
	}
	if cmd.Flags().Changed("idle-delete") {
		o.IdleDelete = &f.idleDelete
	}
	return o, nil
}

func (a *App) clusterUpCmd() *cobra.Command {
	f := &scaleFlags{}
	cmd := &cobra.Command{
		Use:   "up --nodes N",
		Short: "Create machines for the cluster and wait until their nodes are ready (admin)",
		Long: "Up asks the coordinator's provider for machines until the pool has --nodes of\n" +
			"them, and waits until each is ready: created, booted, its agent registered and\n" +
			"(with Docker) in the swarm. On a terminal each machine has a progress bar; else a\n" +
			"line is printed as each moves on. It then lists the machines and what they cost\n" +
			"an hour, when the provider knows prices. Up is a scale from 0: on a pool that has\n" +
			"machines it creates only the missing ones.\n\n" +
			"A machine whose agent does not register within the coordinator's deadline (10m\n" +
			"by default) is deleted, with the reason; up then exits 1.\n\n" +
			"Exit codes: 0 every machine is ready; 1 an error, a machine that failed, or\n" +
			"--timeout passed (the machines stay: see 'cluster machines'); 2 bad flags.",
		Example: `  cloudml-client cluster up --nodes 3 --size s-2vcpu-4gb --region fra1
  cloudml-client cluster up --nodes 3 --dry-run              # the user-data and the cost; creates nothing
  cloudml-client cluster up --nodes 2 --max-hourly-cost 0.5  # refused if the cluster would cost more
  cloudml-client cluster up --nodes 4 --idle-delete 30m --min-nodes 1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.scale(cmd, f) },
	}
	f.add(cmd)
	return cmd
}

func (a *App) clusterScaleCmd() *cobra.Command {
	f := &scaleFlags{}
	cmd := &cobra.Command{
		Use:   "scale --nodes N",
		Short: "Set how many machines a pool has, and wait for them (admin)",
		Long: "Scale sets how many machines a pool has: it creates the missing ones and waits\n" +
			"until they are ready, as up does, or deletes the extra ones (those running no\n" +
			"task first, the swarm's manager last; their tasks are rescheduled) and waits\n" +
			"until the provider confirms them gone. A second pool of another size joins the\n" +
			"same swarm: --pool big --size c-8 --nodes 2; swarm places tasks by their\n" +
			"resources. Exit codes as for up.",
		Example: `  cloudml-client cluster scale --nodes 5
  cloudml-client cluster scale --pool big --size c-8 --nodes 2
  cloudml-client cluster scale --nodes 1 --no-wait`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.scale(cmd, f) },
	}
	f.add(cmd)
	return cmd
}

// scale runs cluster up and cluster scale.
func (a *App) scale(cmd *cobra.Command, f *scaleFlags) error {
	o, err := f.options(cmd)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	resp, err := c.Scale(ctx, o)
	if err != nil {
		return err
	}
	if o.DryRun {
		return a.printPlan(resp)
	}
	if resp.GetError() != "" {
		fmt.Fprintf(a.Stderr, "warning: the provider made %d of the machines asked for: %s\n", len(resp.GetCreated()), resp.GetError())
	}
	pool := resp.GetPool().GetName()
	list, err := c.Machines(ctx, false)
	if err != nil {
		return err
	}
	// Follow the pool's machines: those coming up, and those going away
	// (asked now or before), which are expected gone.
	var ids, deleting []string
	for _, m := range list.GetMachines() {
		if m.GetPool() == pool && (live(m) || m.GetState() == cloudmlv1.MachineState_MACHINE_STATE_DELETING) {
			ids = append(ids, m.GetId())
		}
		if m.GetState() == cloudmlv1.MachineState_MACHINE_STATE_DELETING {
			deleting = append(deleting, m.GetId())
		}
	}
	for _, m := range resp.GetDeleting() {
		deleting = append(deleting, m.GetId())
	}
	for _, m := range append(resp.GetCreated(), resp.GetDeleting()...) {
		if !slices.Contains(ids, m.GetId()) {
			ids = append(ids, m.GetId())
		}
	}
	if !a.json() {
		fmt.Fprintf(a.Stderr, "pool %s: %s asked for; %d created, %d being deleted\n", pool, plural(int(resp.GetPool().GetNodes()), "machine"),
			len(resp.GetCreated()), len(resp.GetDeleting()))
	}
	if f.noWait {
		return a.printMachines(list, true)
	}
	start := time.Now()
	final, err := a.waitMachines(ctx, c, ids, f.timeout, false)
	if err != nil {
		return err
	}
	list, err = c.Machines(ctx, false)
	if err != nil {
		return err
	}
	if perr := a.printMachines(list, true); perr != nil {
		return perr
	}
	if failed := failures(final, deleting); len(failed) > 0 {
		return fmt.Errorf("%s failed: %s", plural(len(failed), "machine"), strings.Join(failed, "; "))
	}
	if !a.json() {
		fmt.Fprintf(a.Stderr, "pool %s: %s ready after %s\n", pool, plural(int(resp.GetPool().GetNodes()), "machine"), human(time.Since(start)))
	}
	return nil
}

// live reports whether a machine exists and is not being deleted.
func live(m *cloudmlv1.Machine) bool {
	switch m.GetState() {
	case cloudmlv1.MachineState_MACHINE_STATE_DELETING, cloudmlv1.MachineState_MACHINE_STATE_GONE, cloudmlv1.MachineState_MACHINE_STATE_LOST:
		return false
	}
	return true
}

// settled reports whether a machine reached where up or down takes it:
// ready, or gone one way or another.
func settled(m *cloudmlv1.Machine, down bool) bool {
	switch m.GetState() {
	case cloudmlv1.MachineState_MACHINE_STATE_GONE, cloudmlv1.MachineState_MACHINE_STATE_LOST:
		return true
	case cloudmlv1.MachineState_MACHINE_STATE_READY:
		return !down
	}
	return false
}

// failures describes the machines that ended where they should not have:
// gone though not among those asked to be deleted, or lost.
func failures(ms []*cloudmlv1.Machine, deleting []string) []string {
	var out []string
	for _, m := range ms {
		bad := m.GetState() == cloudmlv1.MachineState_MACHINE_STATE_LOST ||
			(m.GetState() == cloudmlv1.MachineState_MACHINE_STATE_GONE && !slices.Contains(deleting, m.GetId()))
		if bad {
			out = append(out, m.GetId()+" "+machineState(m.GetState())+": "+m.GetMessage())
		}
	}
	return out
}

// waitMachines follows the machines with progress until each settled
// (down: is gone) or timeout passes, and returns them as last seen.
func (a *App) waitMachines(ctx context.Context, c *client.Client, ids []string, timeout time.Duration, down bool) ([]*cloudmlv1.Machine, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	p := a.machineProgress()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []*cloudmlv1.Machine
	err := c.WatchMachines(wctx, ids, a.machineInterval(), func(ms []*cloudmlv1.Machine) bool {
		last = ms
		p.update(ms)
		for _, m := range ms {
			if !settled(m, down) {
				return false
			}
		}
		return true
	})
	p.done()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		var waiting []string
		for _, m := range last {
			if !settled(m, down) {
				waiting = append(waiting, m.GetId()+" ("+machineState(m.GetState())+")")
			}
		}
		return last, fmt.Errorf("%s not there after %s: %s; see 'cloudml-client cluster machines'", plural(len(waiting), "machine"), timeout, strings.Join(waiting, ", "))
	}
	return last, err
}

// printPlan prints a dry run's plan.
func (a *App) printPlan(resp *cloudmlv1.ScalePoolResponse) error {
	if a.json() {
		return a.printJSON(resp)
	}
	p, pool := resp.GetPlan(), resp.GetPool()
	where := strings.Join(nonEmpty("size "+p.GetSize(), "region "+p.GetRegion(), "image "+p.GetImage()), ", ")
	fmt.Fprintf(a.Stdout, "dry run: pool %s would have %s: %d to create, %d to delete (provider %s", pool.GetName(),
		plural(int(pool.GetNodes()), "machine"), p.GetCreate(), p.GetDelete(), p.GetProvider())
	if where != "" {
		fmt.Fprintf(a.Stdout, "; %s", where)
	}
	fmt.Fprintln(a.Stdout, ")")
	if p.GetPriceKnown() {
		fmt.Fprintf(a.Stdout, "cost: %s/h (%s/month) a machine; the cluster would cost %s/h (about %s/month)\n",
			usd(p.GetHourlyCost()), usd(p.GetMonthlyCost()), usd(p.GetClusterHourlyCost()), usd(p.GetClusterHourlyCost()*hoursPerMonth))
	} else {
		fmt.Fprintf(a.Stdout, "cost: the %s provider knows no prices\n", p.GetProvider())
	}
	for _, n := range p.GetNotes() {
		fmt.Fprintln(a.Stdout, "note: "+n)
	}
	if p.GetUserData() == "" {
		fmt.Fprintf(a.Stdout, "user-data: none (the %s provider renders none)\n", p.GetProvider())
		return nil
	}
	fmt.Fprintln(a.Stdout, "user-data of each machine (its join token masked):")
	_, err := fmt.Fprint(a.Stdout, strings.TrimSuffix(p.GetUserData(), "\n")+"\n")
	return err
}

// hoursPerMonth is what a month of hourly billing counts: DigitalOcean
// bills at most 672 hours a month, and its monthly prices are the hourly
// ones times 672, so the cluster's month agrees with the machines'.
const hoursPerMonth = 672

func nonEmpty(parts ...string) []string {
	var out []string
	for _, p := range parts {
		if f := strings.Fields(p); len(f) > 1 {
			out = append(out, p)
		}
	}
	return out
}

func usd(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("$%.2f", v)
	}
	return fmt.Sprintf("$%.4g", v)
}

func (a *App) clusterDownCmd() *cobra.Command {
	var pool string
	var timeout time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Delete every machine and wait until the provider confirms each gone (admin)",
		Long: "Down deletes every machine of the cluster (or of --pool) and scales its pools\n" +
			"to 0. Their nodes are removed and their tasks rescheduled. The coordinator asks\n" +
			"the provider again until it confirms each machine gone (DigitalOcean: the API\n" +
			"answers 404 for the droplet); down returns then. The coordinator, its state and\n" +
			"the jobs stay. Exit codes: 0 every machine is gone; 1 an error or --timeout\n" +
			"passed (the coordinator keeps deleting).",
		Example: `  cloudml-client cluster down
  cloudml-client cluster down --pool big`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.DeleteMachines(cmd.Context(), client.DeleteOptions{Pool: pool, All: pool == ""})
			if err != nil {
				return err
			}
			var ids []string
			for _, m := range resp.GetDeleting() {
				ids = append(ids, m.GetId())
			}
			if !a.json() {
				fmt.Fprintf(a.Stderr, "deleting %s\n", plural(len(ids), "machine"))
			}
			final := resp.GetDeleting()
			if !noWait {
				if final, err = a.waitMachines(cmd.Context(), c, ids, timeout, true); err != nil {
					return err
				}
			}
			if a.json() {
				return a.printJSON(&cloudmlv1.ListMachinesResponse{Machines: final})
			}
			if noWait {
				fmt.Fprintf(a.Stdout, "%s being deleted; follow with 'cloudml-client cluster machines --all'\n", plural(len(ids), "machine"))
				return nil
			}
			fmt.Fprintf(a.Stdout, "%s deleted; the provider confirmed each gone\n", plural(len(ids), "machine"))
			return nil
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "delete this pool's machines only")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultMachineTimeout, "how long to wait for the provider")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the machines are marked for deletion")
	return cmd
}

func (a *App) clusterGCCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete the provider's machines of this cluster that the coordinator does not know (admin)",
		Long: "Gc lists what the provider has for this cluster (DigitalOcean: every droplet\n" +
			"with the cluster's tag) and deletes each machine the coordinator's record\n" +
			"neither holds nor expects from a create under way, then returns once the\n" +
			"provider confirms them gone. It works from the provider alone, so a coordinator\n" +
			"whose state was lost still finds every machine of its cluster. The coordinator\n" +
			"also does this on start and periodically, unless it is set to keep strays.",
		Example: `  cloudml-client cluster gc --dry-run
  cloudml-client cluster gc`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.CollectGarbage(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(resp)
			}
			if len(resp.GetStrays()) == 0 {
				fmt.Fprintln(a.Stdout, "no stray machines: the provider has none the coordinator does not know")
				return nil
			}
			t := newTable(a.Stdout)
			t.row("MACHINE", "NAME", "POOL", "SIZE", "ADDRESS", "DELETED")
			for _, m := range resp.GetStrays() {
				deleted := "no"
				if slices.Contains(resp.GetDeleted(), m.GetId()) {
					deleted = "yes"
				}
				t.row(m.GetId(), orDash(m.GetName()), orDash(m.GetPool()), orDash(m.GetSize()), orDash(cmp.Or(m.GetPrivateIp(), m.GetPublicIp())), deleted)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(a.Stdout, "%s the coordinator does not know; run 'cloudml-client cluster gc' to delete them\n", plural(len(resp.GetStrays()), "machine"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the strays and delete nothing")
	return cmd
}

func (a *App) clusterMachinesCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "machines",
		Short: "List the provider's machines: state, node, address, cost (admin)",
		Long: "Machines lists what the coordinator asked its provider for, by pool: each\n" +
			"machine's state (creating, booted, registered, ready, stopped, deleting, gone,\n" +
			"lost), the node its agent registered as, its address, running tasks, its price\n" +
			"an hour when the provider knows prices, and what it waits for or why it went.\n" +
			"Machines deleted because their agent never registered, and machines that\n" +
			"vanished, stay listed for an hour; --all adds those deleted as asked.\n" +
			"'cluster nodes' lists the registered agents instead, wherever they run.",
		Example: `  cloudml-client cluster machines
  cloudml-client cluster machines --all -o wide`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.Machines(cmd.Context(), all)
			if err != nil {
				return err
			}
			return a.printMachines(list, true)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also list machines deleted in the last hour")
	return cmd
}

// printMachines prints a machine listing; summary adds the pools and the
// cost under the table.
func (a *App) printMachines(list *cloudmlv1.ListMachinesResponse, summary bool) error {
	if a.json() {
		return a.printJSON(list)
	}
	if len(list.GetMachines()) == 0 {
		fmt.Fprintf(a.Stdout, "no machines (provider %s)\n", list.GetProvider())
		return nil
	}
	t := newTable(a.Stdout)
	head := []string{"MACHINE", "POOL", "SIZE", "STATE", "NODE", "ADDRESS", "TASKS", "$/HOUR", "MESSAGE"}
	if a.wide() {
		head = []string{"MACHINE", "NAME", "POOL", "SIZE", "REGION", "STATE", "NODE", "NODE STATE", "SWARM", "PRIVATE IP", "PUBLIC IP", "TASKS", "$/HOUR", "AGE", "REQUEST", "MESSAGE"}
	}
	t.row(head...)
	for _, m := range list.GetMachines() {
		node := "-"
		if m.GetNodeId() != "" {
			node = nodeLabel(m.GetNodeId(), &cloudmlv1.Node{Hostname: m.GetHostname()})
		}
		price := "-"
		if m.HourlyCost != nil {
			price = usd(m.GetHourlyCost())
		}
		tasks := "-"
		if m.GetNodeId() != "" && live(m) {
			tasks = count(m.GetRunningTasks())
		}
		if a.wide() {
			ns := "-"
			if m.GetNodeId() != "" {
				ns = nodeState(m.GetNodeState())
			}
			t.row(m.GetId(), orDash(m.GetName()), m.GetPool(), orDash(m.GetSize()), orDash(m.GetRegion()), machineState(m.GetState()), node, ns,
				orDash(m.GetSwarmRole()), orDash(m.GetPrivateIp()), orDash(m.GetPublicIp()), tasks, price, since(m.GetCreateTime()),
				orDash(m.GetRequest()), orDash(m.GetMessage()))
			continue
		}
		t.row(m.GetId(), m.GetPool(), orDash(m.GetSize()), machineState(m.GetState()), node, orDash(cmp.Or(m.GetPrivateIp(), m.GetPublicIp())),
			tasks, price, orDash(m.GetMessage()))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if !summary {
		return nil
	}
	for _, p := range list.GetPools() {
		idle := "idle machines kept"
		if d := p.GetIdleDelete().AsDuration(); d > 0 {
			idle = fmt.Sprintf("idle machines deleted after %s down to %d", d, p.GetMinNodes())
		}
		fmt.Fprintf(a.Stdout, "pool %s: %s asked for%s; %s\n", p.GetName(), plural(int(p.GetNodes()), "machine"),
			strings.Join(append([]string{""}, nonEmpty("size "+p.GetSize(), "region "+p.GetRegion())...), ", "), idle)
	}
	if list.GetPriceKnown() {
		fmt.Fprintf(a.Stdout, "the machines cost %s an hour (about %s a month)\n", usd(list.GetHourlyCost()), usd(list.GetHourlyCost()*hoursPerMonth))
	}
	return nil
}

// machineState is the short lower-case name of a machine state.
func machineState(s cloudmlv1.MachineState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MACHINE_STATE_"))
}
