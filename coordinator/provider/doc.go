// Package provider is where the coordinator meets the machines its nodes
// run on. Every way of making nodes (local: agent processes on this machine;
// netns: a Docker Swarm of network namespaces; digitalocean: droplets that
// boot the agent from cloud-init) implements one Provider: create nodes,
// delete them, list what exists, and reconcile what exists with what the
// coordinator's book says should. The coordinator holds a Provider, never a
// provider name; cmd/coordinator fills a Registry (name → Factory) and builds
// the one --provider names.
//
// The contract is written for a cloud API that can lose a response, so the
// cheap providers obey the same rules and the tests that prove them carry
// over:
//
//   - Every create is a request with its own id (CreateRequest.Request) that
//     the caller records before it calls Create and that the provider attaches
//     to each node it makes (DigitalOcean: a tag). After an error, List finds
//     what the request made: a retry never makes a second node.
//   - Delete returns nil for a node only once the node is gone (DigitalOcean:
//     the API answers 404 for it), and for a node that never existed.
//   - List shows every node of this cluster that exists, including those the
//     coordinator does not know (DigitalOcean: every droplet with the
//     cluster's tag).
//   - Reconcile compares List with the book: strays (listed, unknown) are
//     deleted or reported, vanished nodes (known, not listed) are reported
//     so their tasks can be rescheduled.
//
// Each node the provider makes carries its own single-use join token, minted
// through Target.MintToken with the node's slot cap; the token is the only
// secret a node receives.
//
// Fleet is the coordinator's side: it keeps the book of requests and
// machines in a Book (the coordinator's store; MemoryBook in tests),
// writes each request before its create and each delete before asking
// for it, adopts the nodes of requests a dead coordinator left behind,
// counts a machine gone only once Delete returned nil, and reconciles on
// start and periodically. DryRunner, Pricer and Regional are what a
// provider may offer beyond Provider (optional.go). None is the provider of
// `--provider none`: it makes no nodes. providertest holds a fake provider
// and the contract every Provider must pass.
package provider
