package provider

import "context"

// Optional interfaces: what some providers offer beyond Provider. The
// coordinator checks for them with a type assertion; a provider without
// one has nothing of the kind to say (local renders no user-data and knows
// no prices).

// DryRunner is a Provider that can show what a create would make without
// making it: `cluster up --dry-run`.
type DryRunner interface {
	Provider
	// PlanCreate renders what Create(ctx, req) would send for one of its
	// nodes, with its join token masked (MaskedToken, or the provider's
	// own mask). It mints no token and creates nothing; it may read the
	// provider's API (sizes, regions) and returns ErrInvalid for a size
	// the provider does not offer.
	PlanCreate(ctx context.Context, req CreateRequest) (CreatePlan, error)
}

// MaskedToken stands for a join token in CreatePlan.UserData.
const MaskedToken = "CMLTKN-<masked>"

// CreatePlan is what a create would make, per node.
type CreatePlan struct {
	// Size, Region and Image are what the node would be, the request's
	// empty size resolved to the provider's default.
	Size, Region, Image string
	// UserData is one node's rendered user-data (cloud-init), its join
	// token masked; empty when the provider renders none.
	UserData string
	// Notes say anything else the user should know before creating (the
	// VPC, the SSH keys, the tags, a cost limit the provider would
	// enforce), one line each.
	Notes []string
}

// Pricer is a Provider that knows what its machines cost; the coordinator
// shows costs and enforces `cluster up --max-hourly-cost` with it.
type Pricer interface {
	Provider
	// Price returns what one node of size costs ("": the provider's
	// default size); ErrInvalid for a size the provider does not offer.
	// Listings call it for every machine: answer from a cache.
	Price(ctx context.Context, size string) (Price, error)
}

// Price is what one node costs, in US dollars.
type Price struct {
	// Size is the size priced (the default resolved).
	Size string
	// Hourly and Monthly are its price per hour and per month.
	Hourly, Monthly float64
}

// Regional is a Provider whose nodes are made in one region of a cloud
// (DigitalOcean: its --region). One cluster is one region, since its
// swarm runs over the region's private network: the coordinator refuses a
// scale that names another, and any region for a provider that is not a
// Regional.
type Regional interface {
	Provider
	// Region is the region every node is made in ("fra1").
	Region() string
}
