package provider

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
)

// NewRequestID returns a fresh CreateRequest.Request: 16 random hex digits.
func NewRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Diff sorts listed nodes against req: adopted (unknown, from a pending
// request), strays (unknown, from no pending request) and vanished (known
// ids not listed). It changes nothing.
func Diff(listed []Node, req ReconcileRequest) (adopted, strays []Node, vanished []string) {
	seen := map[string]bool{}
	for _, n := range listed {
		seen[n.ID] = true
		switch {
		case slices.Contains(req.Known, n.ID):
		case n.Request != "" && slices.Contains(req.Pending, n.Request):
			adopted = append(adopted, n)
		default:
			strays = append(strays, n)
		}
	}
	for _, id := range req.Known {
		if !seen[id] {
			vanished = append(vanished, id)
		}
	}
	return adopted, strays, vanished
}

// ReconcileByList is Reconcile for a provider whose nodes need nothing
// beyond List and Delete: it lists, sorts the nodes with Diff, and deletes
// the strays when req.DeleteStrays. A failed delete is an error, with the
// report of what was done.
func ReconcileByList(ctx context.Context, p Provider, req ReconcileRequest) (ReconcileReport, error) {
	listed, err := p.List(ctx)
	if err != nil {
		return ReconcileReport{}, fmt.Errorf("list nodes: %w", err)
	}
	r := ReconcileReport{Listed: listed}
	r.Adopted, r.Strays, r.Vanished = Diff(listed, req)
	if !req.DeleteStrays || len(r.Strays) == 0 {
		return r, nil
	}
	ids := make([]string, len(r.Strays))
	for i, n := range r.Strays {
		ids[i] = n.ID
	}
	if err := p.Delete(ctx, ids); err != nil {
		return r, fmt.Errorf("delete strays: %w", err)
	}
	r.Deleted = ids
	return r, nil
}
