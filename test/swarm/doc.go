// Package swarm tests CloudML on a real multi-node Docker Swarm: the real
// coordinator, agent and client binaries, `coordinator serve --provider
// netns` building namespaces with one dockerd each, container jobs as swarm
// services, a fake-gcs-server bucket reached through the real GCS client,
// and the failures a cluster meets (unknown images, killed containers, a
// dead dockerd). It needs root, docker.io and iproute2; without them it
// skips, and under CI=true it fails.
package swarm
