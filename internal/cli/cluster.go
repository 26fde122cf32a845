package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// completionTimeout bounds the coordinator calls of shell completion.
const completionTimeout = 2 * time.Second

func (a *App) clusterCmd() *cobra.Command {
	return groupCmd("cluster", "Cluster commands: machines and nodes",
		"Cluster commands make, list and delete the machines the coordinator runs jobs\n"+
			"on. A machine is what the coordinator's provider made (a droplet, a local agent\n"+
			"process): up, scale, down, gc and machines work on those (admin). A node is an\n"+
			"agent that registered, wherever it runs: nodes lists those.",
		`  cloudml-client cluster up --nodes 3 --size s-2vcpu-4gb --region fra1
  cloudml-client cluster machines
  cloudml-client cluster nodes
  cloudml-client cluster scale --nodes 5
  cloudml-client cluster down
  cloudml-client cluster info`,
		a.clusterUpCmd(), a.clusterScaleCmd(), a.clusterDownCmd(), a.clusterGCCmd(), a.clusterMachinesCmd(), a.nodesCmd(), a.clusterInfoCmd())
}

func (a *App) clusterInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Describe the coordinator: version, provider, default bucket, heartbeat port",
		Long: "Info shows the coordinator this client talks to: its address, build version,\n" +
			"node provider, the bucket jobs use by default, and where agents send their\n" +
			"heartbeats: a port of their own when the coordinator runs with\n" +
			"--heartbeat-listen (open it to the nodes beside the coordinator's port), else\n" +
			"the coordinator's port.",
		Example: `  cloudml-client cluster info
  cloudml-client cluster info -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.ClusterInfo(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(info)
			}
			heartbeats := "the coordinator's port"
			if p := info.GetHeartbeatPort(); p > 0 {
				heartbeats = fmt.Sprintf("port %d, a process of its own", p)
			}
			t := newTable(a.Stdout)
			t.row("coordinator", c.Address())
			t.row("version", orDash(info.GetVersion()))
			t.row("provider", orDash(info.GetProvider()))
			t.row("default bucket", orDash(info.GetDefaultBucket()))
			t.row("heartbeats", heartbeats)
			return t.flush()
		},
	}
}

func (a *App) nodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List nodes: state, runtime, slots, running tasks, why a node is down",
		Long: "Nodes lists every node the coordinator knows: its id and hostname, whether it\n" +
			"is ready, its runtime, slots and running tasks, and why it is down or out of\n" +
			"the swarm. -o wide adds the swarm role, address, memory and last heartbeat.",
		Example: `  cloudml-client cluster nodes
  cloudml-client cluster nodes -o wide`,
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(&cloudmlv1.ListNodesResponse{Nodes: nodes})
			}
			t := newTable(a.Stdout)
			head := []string{"NODE", "HOSTNAME", "STATE", "RUNTIME", "SLOTS", "RUNNING", "MESSAGE"}
			if a.wide() {
				head = []string{"NODE", "HOSTNAME", "STATE", "RUNTIME", "SLOTS", "RUNNING", "SWARM", "ADDRESS", "MEMORY", "LAST SEEN", "MESSAGE"}
			}
			t.row(head...)
			for _, n := range nodes {
				cells := []string{n.GetId(), n.GetHostname(), nodeState(n.GetState()), n.GetRuntime(), count(n.GetSlots()), count(n.GetRunningTasks())}
				if a.wide() {
					cells = append(cells, orDash(n.GetSwarmRole()), n.GetAddress(), fmt.Sprintf("%.1f GiB", float64(n.GetMemoryBytes())/(1<<30)), since(n.GetLastHeartbeat()))
				}
				t.row(append(cells, orDash(n.GetMessage()))...)
			}
			return t.flush()
		},
	}
	cmd.AddCommand(a.nodeRemoveCmd())
	return cmd
}
