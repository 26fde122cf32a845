// Package coordinator is CloudML's control plane: the gRPC server that agents
// dial (AgentService) and clients call (JobService, ClusterService).
//
// It owns durable state through coordinator/store, keeps a working copy in
// memory under one mutex, and writes every event to the store before it acts
// on it (an assignment is stored before it is pushed down a session). The
// scheduler (scheduler.go, its placement policy in coordinator/placement)
// is event-driven: submits, node arrivals and
// departures, attempt ends and cancels poke a coalescing trigger, and a one
// second tick catches anything else. Node liveness (nodes.go) turns missed
// heartbeats into DOWN nodes and lost attempts; heartbeats are recorded
// apart from that mutex (liveness.go), and with Config.HeartbeatListen
// answered in a process of their own (coordinator/pulse, pulse.go). Logs are the log broker's
// (coordinator/logbroker), a role split off with its own state and lock: it
// stores numbered batches, acknowledges what is durable and fans output out
// to subscribers by closing a per-job channel, and asks the job store
// (logs.go) only whether an attempt's logs are still wanted. Sessions are
// the dispatcher's (coordinator/dispatch), split off the same way: the job
// store hands it each command as its lock is released (session.go), with
// the commit the command waits for, and each session sends once that
// commit is durable, taking no coordinator lock.
// Machines (machines.go, machines_rpc.go) are what the provider made for the
// nodes: a provider.Fleet whose book is the store, so a create request is
// durable before the provider is asked and a delete before it is asked for;
// one loop links machines to the nodes their agents registered as, deletes
// machines whose agent never registers or that stay idle, and reconciles.
//
// Agents are never imported here: the two roles meet only in
// proto/cloudml/v1. Every connection is TLS 1.3 with the coordinator's own CA
// (trust.go); a caller's identity and role come from its peer certificate,
// checked by one interceptor against a closed table of methods (auth.go),
// never from a request field. Join tokens (tokens.go) and client
// credentials (credentials.go) are the admin's. Errors are
// sentinels mapped to gRPC codes in one place (errors.go).
package coordinator
