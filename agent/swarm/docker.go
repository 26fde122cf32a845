package swarm

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// DockerAPI is the part of the Docker Engine API this package uses;
// *client.Client implements it.
type DockerAPI interface {
	// DaemonHost is the daemon's address, for messages.
	DaemonHost() string
	// Ping checks that the daemon answers.
	Ping(ctx context.Context) (types.Ping, error)
	// Info describes the daemon, its swarm state included.
	Info(ctx context.Context) (system.Info, error)
	// SwarmInit founds a swarm and returns the node id.
	SwarmInit(ctx context.Context, req dswarm.InitRequest) (string, error)
	// SwarmJoin joins a swarm.
	SwarmJoin(ctx context.Context, req dswarm.JoinRequest) error
	// SwarmInspect describes the swarm, join tokens included (managers only).
	SwarmInspect(ctx context.Context) (dswarm.Swarm, error)
	// SwarmLeave leaves the swarm, or abandons a pending join.
	SwarmLeave(ctx context.Context, force bool) error
}

var _ DockerAPI = (*client.Client)(nil)

// NewDocker returns a client for the daemon at host (a DOCKER_HOST value
// such as unix:///var/run/docker.sock), or for the environment's daemon
// (DOCKER_HOST and friends) when host is "". It negotiates the API version,
// so Engine 20.10 (API 1.41) works.
func NewDocker(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}
