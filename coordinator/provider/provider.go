package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
)

// Sentinel errors; providers wrap them with %w.
var (
	// ErrInvalid means a request the provider cannot take as given: a bad
	// count, pool or request id, or a size it does not know.
	ErrInvalid = errors.New("invalid provider request")
	// ErrUnsupported means the provider does not offer the operation (the
	// none provider creates no nodes).
	ErrUnsupported = errors.New("not supported by this provider")
	// ErrCapacity means the provider cannot make more nodes (netns: every
	// namespace runs an agent; DigitalOcean: the account's droplet limit).
	ErrCapacity = errors.New("provider has no capacity for more nodes")
	// ErrNotStarted means a call before Start or after Close.
	ErrNotStarted = errors.New("provider not started")
)

// DefaultPool is the pool of nodes created without one.
const DefaultPool = "default"

// Provider makes and removes the machines the coordinator's nodes run on.
// Its methods are safe for concurrent use; Create, Delete, List and
// Reconcile are valid between Start and Close.
type Provider interface {
	// Name is the provider's registry name ("local", "netns", "none",
	// "digitalocean"); GetClusterInfo reports it.
	Name() string

	// Start binds the provider to its coordinator, which now serves at
	// t.Addr, and checks what its nodes will need (local and netns: that
	// the agent binary exists; DigitalOcean: the token, region and size
	// against the API). ctx bounds Start only: what the provider runs
	// afterwards (local and netns supervise their agent processes) lasts
	// until Close.
	Start(ctx context.Context, t Target) error

	// Create makes req.Count nodes in pool req.Pool and returns them.
	// Each node gets its own join token from Target.MintToken (a label
	// naming the node; slots: req.Slots or the size's), and carries
	// req.Request, so that List finds it if the response is lost.
	// On error, the nodes returned exist; others the request made may
	// exist too (DigitalOcean: a create whose response was lost), and
	// the caller lists by req.Request before it retries, never blindly.
	// A provider that retries internally (DigitalOcean on 429 and 5xx)
	// lists by the request's tag before each retry.
	Create(ctx context.Context, req CreateRequest) ([]Node, error)

	// Delete deletes the nodes with these provider ids and returns nil
	// once every one is gone: its agent stopped and its machine (process,
	// namespace agent, droplet) no more. DigitalOcean counts a droplet as
	// gone only when the API answers 404 for it, not when it accepts the
	// delete. An id the provider does not have is gone: nil. Errors name
	// the ids not (yet) gone; deleting them again is safe.
	Delete(ctx context.Context, ids []string) error

	// List returns every node of this cluster that exists now, including
	// nodes being created or deleted and nodes the coordinator does not
	// know (DigitalOcean: every droplet with the cluster's tag, in any
	// status), sorted by ID.
	List(ctx context.Context) ([]Node, error)

	// Reconcile compares what exists with req (the coordinator's book):
	// nodes listed but neither known nor from a pending request are
	// strays, deleted when req.DeleteStrays; known nodes not listed have
	// vanished. It keeps known nodes running where the provider can (local
	// and netns restart exited agents all along; DigitalOcean powers on a
	// droplet found off). The coordinator calls it at start and
	// periodically; most providers implement it with ReconcileByList.
	Reconcile(ctx context.Context, req ReconcileRequest) (ReconcileReport, error)

	// Close releases what Start holds. Nodes that live only as long as the
	// coordinator (local and netns: their agents, and netns's namespaces)
	// are stopped; cloud nodes stay, and only Delete removes them.
	// Close is idempotent.
	Close() error
}

// Preparer is a Provider that must build something before the coordinator
// listens: netns makes its namespaces and bridge, so that the coordinator
// also listens on the bridge, where the namespaces can reach it, and opens
// the swarm ports to the cluster's subnet only.
type Preparer interface {
	Provider
	// Prepare builds it; Close undoes it. The coordinator calls Prepare
	// once, before it listens and before Start.
	Prepare(ctx context.Context) (Prepared, error)
}

// Prepared is what a Preparer tells the coordinator.
type Prepared struct {
	// NodeListen, when set, is an address (host:port, port 0 for any) the
	// coordinator listens on besides its own; the nodes dial that
	// listener, whose address becomes Target.Addr.
	NodeListen string
	// PeerCIDRs are the nodes' addresses: unless the coordinator was given
	// its own, agents open the swarm ports to these only.
	PeerCIDRs []string
}

// Target is the coordinator as a provider's nodes see it.
type Target struct {
	// Addr is the host:port that nodes on this machine dial: the
	// coordinator's listen address (a wildcard host becomes 127.0.0.1),
	// or its listener on Prepared.NodeListen.
	Addr string
	// Advertise is the host:port that nodes elsewhere dial (--advertise),
	// empty when not set. A cloud provider renders it into the node's
	// user-data and refuses to start without it.
	Advertise string
	// CACertPEM is the coordinator's CA certificate; public, so user-data
	// may carry it (the join token pins its fingerprint too).
	CACertPEM []byte
	// AgentURL is the https:// URL at which the coordinator serves the
	// agent binary to the machines it makes (coordinator.AgentDownload),
	// and AgentSHA256 the binary's SHA-256 in hex; both empty when it
	// serves none (no --download-listen). A cloud provider renders them
	// into the node's user-data and refuses to start without them.
	AgentURL, AgentSHA256 string
	// MintToken makes a single-use join token, the only secret a node
	// gets: label names the node, slots caps its task slots (0: the
	// coordinator's default cap). Mint one per node, or per agent start
	// where agents are restarted without their certificate at hand; it
	// expires unused within 15 minutes.
	MintToken func(label string, slots int) (string, error)
}

// JoinTokenEnv returns the environment entry that hands an agent a fresh
// join token (CLOUDML_JOIN_TOKEN=...). A restarted agent that already has
// its certificate ignores it, and the token expires unused.
func (t Target) JoinTokenEnv(label string, slots int) (string, error) {
	if t.MintToken == nil {
		return "", errors.New("no way to mint a join token for the agent")
	}
	tok, err := t.MintToken(label, slots)
	if err != nil {
		return "", fmt.Errorf("mint a join token for %s: %w", label, err)
	}
	return pki.JoinTokenEnv + "=" + tok, nil
}

// CreateRequest asks for nodes.
type CreateRequest struct {
	// Request identifies this create; the caller records it before it
	// calls Create, and every node made carries it (DigitalOcean: the tag
	// "cloudml-req:<Request>"). Empty means Fleet makes one (NewRequestID).
	Request string
	// Count is how many nodes to make, at least 1.
	Count int
	// Pool groups nodes of one size; empty means DefaultPool. A cluster
	// may have several pools; swarm places tasks by their resources.
	Pool string
	// Size is the machine's shape as the provider names it (DigitalOcean:
	// a size slug such as "s-2vcpu-4gb"); empty means the provider's
	// default. local and netns know only "" (this machine).
	Size string
	// Slots caps each node's task slots in its join token and is passed
	// to its agent; 0 means the provider decides (local and netns: their
	// configured slots; DigitalOcean: the size's vCPUs).
	Slots int
	// FoundSwarm asks that the first node made found the cluster's swarm
	// as it boots, and be returned with Node.Founder set (DigitalOcean:
	// its user-data starts docker swarm init beside the agent's download,
	// so the swarm is up about when its agent registers). A provider that
	// cannot ignores it: the coordinator then asks a registered node.
	FoundSwarm bool
}

// namePattern is what pool names and request ids may be: it fits a
// DigitalOcean tag ("cloudml-pool:<pool>") and a hostname label.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// Validate fills the default pool and checks the request.
func (r *CreateRequest) Validate() error {
	if r.Pool == "" {
		r.Pool = DefaultPool
	}
	switch {
	case r.Count < 1:
		return fmt.Errorf("%w: count must be at least 1, got %d", ErrInvalid, r.Count)
	case r.Slots < 0:
		return fmt.Errorf("%w: slots must not be negative, got %d", ErrInvalid, r.Slots)
	case !namePattern.MatchString(r.Pool):
		return fmt.Errorf("%w: pool %q: want lowercase letters, digits and '-', at most 40", ErrInvalid, r.Pool)
	case !namePattern.MatchString(r.Request):
		return fmt.Errorf("%w: request id %q: want lowercase letters, digits and '-', at most 40", ErrInvalid, r.Request)
	}
	return nil
}

// State is where a node is in its life, as its provider sees it.
type State string

// Node states.
const (
	// StateCreating: asked for, not up yet (a new droplet; an agent
	// waiting to be started again after it exited).
	StateCreating State = "creating"
	// StateRunning: up (the agent process runs; the droplet is active).
	StateRunning State = "running"
	// StateStopped: exists but is not running (a droplet powered off).
	StateStopped State = "stopped"
	// StateDeleting: a delete is under way and not yet confirmed.
	StateDeleting State = "deleting"
)

// Node is a machine a provider made, as it lists it.
type Node struct {
	// ID is the provider's id (local: "node-3"; netns: "<namespace>-<k>";
	// DigitalOcean: the droplet id). Delete takes it. No other node gets
	// it later (local, netns: within one start of the coordinator).
	ID string
	// Name is the node's name (hostname); its join token's label.
	Name string
	// Pool and Size are those of the request that made it.
	Pool string
	Size string
	// Request is the id of the CreateRequest that made it; empty for a
	// node that carries none (a stray made by hand).
	Request string
	// PrivateIP is the node's address inside the cluster (local:
	// 127.0.0.1; netns: its bridge address; DigitalOcean: its VPC
	// address); PublicIP its address on the internet, if any. The zero
	// Addr means none (yet).
	PrivateIP netip.Addr
	PublicIP  netip.Addr
	// State is where the node is in its life.
	State State
	// Created is when the provider made it.
	Created time.Time
	// Founder is set on the node made to found the swarm as it boots
	// (CreateRequest.FoundSwarm; DigitalOcean: it carries FounderTag).
	// The coordinator asks it, and no other node, to found the swarm while
	// it lives and has not tried.
	Founder bool
}

// ReconcileRequest is the coordinator's book, for Reconcile.
type ReconcileRequest struct {
	// Known are the ids of the nodes the coordinator made and has not
	// deleted.
	Known []string
	// Pending are the ids of create requests recorded whose nodes are not
	// all known yet (a create under way, or one whose response was lost):
	// a listed node that carries one is adopted, not a stray.
	Pending []string
	// DeleteStrays deletes strays; false only reports them.
	DeleteStrays bool
}

// ReconcileReport is what Reconcile found and did.
type ReconcileReport struct {
	// Listed is every node that exists, as List returned it.
	Listed []Node
	// Adopted are listed nodes, unknown, that carry a pending request.
	Adopted []Node
	// Strays are listed nodes that are neither known nor adopted.
	Strays []Node
	// Deleted are the ids of the strays deleted.
	Deleted []string
	// Vanished are known ids that no longer exist: the coordinator marks
	// their nodes lost and reschedules their tasks.
	Vanished []string
}
