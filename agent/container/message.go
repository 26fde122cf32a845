package container

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// failureMessage says, in words a user can act on, why the swarm could not
// start asg's task t.
func (m *Manager) failureMessage(ctx context.Context, asg *cloudmlv1.Assignment, t swarm.Task) string {
	node := m.hostname(ctx, t.NodeID)
	err := t.Status.Err
	switch {
	case strings.Contains(err, "No such image"):
		return fmt.Sprintf("image %q is not on node %s and no registry serves it: load it on the nodes or push it to a registry", asg.GetImage(), node)
	case strings.Contains(err, "bind source path does not exist"):
		return fmt.Sprintf("the job's code or data is not staged on node %s (%s): the node has not staged the job", node, err)
	case err == "":
		return fmt.Sprintf("the swarm could not start the task on node %s (task %s)", node, t.Status.State)
	}
	return fmt.Sprintf("the swarm could not start the task on node %s: %s", node, err)
}

// hostname names a swarm node for humans: its hostname, else its id.
func (m *Manager) hostname(ctx context.Context, nodeID string) string {
	if nodeID == "" {
		return "(none)"
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	n, _, err := m.cfg.Docker.NodeInspectWithRaw(cctx, nodeID)
	if err != nil || n.Description.Hostname == "" {
		return nodeID
	}
	return n.Description.Hostname
}
