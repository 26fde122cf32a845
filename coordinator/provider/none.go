package provider

import (
	"context"
	"fmt"
)

// NoneName is the none provider's name.
const NoneName = "none"

// None is the provider of `--provider none`: it makes no nodes; agents are
// started elsewhere and join with a join token ('cloudml-client token
// create'). It lists nothing, so it has nothing to delete or reconcile.
type None struct{}

var _ Provider = None{}

// Name returns "none".
func (None) Name() string { return NoneName }

// Start does nothing.
func (None) Start(context.Context, Target) error { return nil }

// Create refuses: ErrUnsupported.
func (None) Create(context.Context, CreateRequest) ([]Node, error) {
	return nil, fmt.Errorf("%w: provider none creates no nodes; start agents with a join token ('cloudml-client token create')", ErrUnsupported)
}

// Delete has nothing to delete: every id is gone.
func (None) Delete(context.Context, []string) error { return nil }

// List lists nothing.
func (None) List(context.Context) ([]Node, error) { return nil, nil }

// Reconcile finds nothing; known ids (there are none) would be vanished.
func (n None) Reconcile(ctx context.Context, req ReconcileRequest) (ReconcileReport, error) {
	return ReconcileByList(ctx, n, req)
}

// Close does nothing.
func (None) Close() error { return nil }
