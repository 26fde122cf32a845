// Package swarm is the agent's side of Docker Swarm membership: it opens the
// swarm ports on the node's own firewall (ufw, when present and active),
// then founds the swarm (Init) or joins it (Join) through the local Docker
// Engine API, and tells what the node's membership is (Current). The agent
// reports the result to the coordinator with ReportSwarm; the worker join
// token travels only on that call and is never logged here.
//
// A node that already belongs to the swarm it is asked to found or join is
// left alone, so a restarted agent is harmless; a node in another swarm is
// an error wrapping ErrOtherSwarm that says what to do.
//
// Docker sits behind DockerAPI and the firewall behind Firewall, so unit
// tests use stubs and integration tests the real daemon and ufw.
package swarm
