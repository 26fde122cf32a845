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
	// DryRun renders what Create(ctx, req) would send for one of its
	// nodes, with MaskedToken in place of the node's join token. It mints
	// no token and creates nothing; it may read the provider's API
	// (sizes, regions) and returns ErrInvalid for a size or region the
	// provider does not offer.
	DryRun(ctx context.Context, req CreateRequest) (DryRun, error)
}

// MaskedToken stands for a join token in DryRun.UserData.
const MaskedToken = "CMLTKN-<masked>"

// DryRun is what a create would make, per node.
type DryRun struct {
	// Size and Region are what the request's (possibly empty) size and
	// region resolve to; Image is the machine image.
	Size, Region, Image string
	// UserData is one node's rendered user-data (cloud-init), its join
	// token replaced by MaskedToken; empty when the provider renders none.
	UserData string
	// Notes say anything else the user should know before creating (the
	// VPC, the SSH keys, the tags), one line each.
	Notes []string
}

// Pricer is a Provider that knows what its machines cost; the coordinator
// shows costs and enforces `--max-hourly-cost` with it.
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

// Regional is a Provider whose creates may name a region
// (CreateRequest.Region). The coordinator refuses a region for any other.
type Regional interface {
	Provider
	// DefaultRegion is where a create that names no region makes nodes.
	DefaultRegion() string
}
