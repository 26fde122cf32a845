package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Machines: what the coordinator's provider runs the nodes on. These
// calls need an admin credential.

// ScaleOptions say what a pool should be.
type ScaleOptions struct {
	// Pool is the pool's name; empty means "default".
	Pool string
	// Nodes is how many machines it should have.
	Nodes int32
	// Size is its machines' size (empty: the pool's, else the provider's
	// default). Region, when set, must be the provider's region.
	Size, Region string
	// MinNodes, when set, is how many machines idle deletion leaves.
	MinNodes *int32
	// IdleDelete, when set, deletes machines idle this long (0: never,
	// whatever the coordinator's default).
	IdleDelete *time.Duration
	// MaxHourlyCost refuses the scale when the cluster would cost more an
	// hour, in US dollars; 0 means no limit.
	MaxHourlyCost float64
	// DryRun returns the plan and changes nothing.
	DryRun bool
}

// Scale sets how many machines a pool has. It returns once the missing
// machines are created (not yet booted: follow them with WatchMachines)
// and the extra ones marked for deletion.
func (c *Client) Scale(ctx context.Context, o ScaleOptions) (*cloudmlv1.ScalePoolResponse, error) {
	req := &cloudmlv1.ScalePoolRequest{Pool: o.Pool, Nodes: o.Nodes, Size: o.Size, Region: o.Region,
		MinNodes: o.MinNodes, MaxHourlyCost: o.MaxHourlyCost, DryRun: o.DryRun}
	if o.IdleDelete != nil {
		req.IdleDelete = durationpb.New(*o.IdleDelete)
	}
	// A create can take the provider a while: more than a listing.
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.CallTimeout, 10*time.Minute))
	defer cancel()
	resp, err := c.cluster.ScalePool(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("scale pool: %w", err)
	}
	return resp, nil
}

// Machines lists the machines; includeGone adds those deleted or lost in
// the last hour.
func (c *Client) Machines(ctx context.Context, includeGone bool) (*cloudmlv1.ListMachinesResponse, error) {
	return c.machinesAfter(ctx, includeGone, 0, 0)
}

// machinesAfter is Machines as a blocking query: with index (a listing's
// Index), the coordinator answers once the listing changed since, or
// after wait. A coordinator without blocking queries answers at once with
// Index 0.
func (c *Client) machinesAfter(ctx context.Context, includeGone bool, index uint64, wait time.Duration) (*cloudmlv1.ListMachinesResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	req := &cloudmlv1.ListMachinesRequest{IncludeGone: includeGone}
	if index != 0 {
		req.WaitIndex, req.WaitMax = index, durationpb.New(wait)
	}
	resp, err := c.cluster.ListMachines(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	return resp, nil
}

// DeleteOptions name the machines to delete.
type DeleteOptions struct {
	// IDs are machines' provider ids.
	IDs []string
	// Pool deletes a pool's machines and scales it to 0.
	Pool string
	// All deletes every machine and scales every pool to 0.
	All bool
}

// DeleteMachines marks machines for deletion and returns them; the
// coordinator deletes them in the background (follow with WatchMachines).
func (c *Client) DeleteMachines(ctx context.Context, o DeleteOptions) (*cloudmlv1.DeleteMachinesResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.DeleteMachines(ctx, &cloudmlv1.DeleteMachinesRequest{Ids: o.IDs, Pool: o.Pool, All: o.All})
	if err != nil {
		return nil, fmt.Errorf("delete machines: %w", err)
	}
	return resp, nil
}

// CollectGarbage deletes the machines the provider has for this cluster
// that the coordinator does not know (dryRun: only lists them), and
// returns once they are gone.
func (c *Client) CollectGarbage(ctx context.Context, dryRun bool) (*cloudmlv1.CollectGarbageResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.CallTimeout, 10*time.Minute))
	defer cancel()
	resp, err := c.cluster.CollectGarbage(ctx, &cloudmlv1.CollectGarbageRequest{DryRun: dryRun})
	if err != nil {
		return nil, fmt.Errorf("collect garbage: %w", err)
	}
	return resp, nil
}

// WatchMachines reads the machine list every interval (1s if 0), gone
// machines included, and calls see with the machines named by ids (in
// that order; a machine the coordinator forgot is reported GONE) until see
// returns true or ctx ends. Each read after the first is a blocking query:
// the coordinator answers as soon as the list changed, so see hears of a
// change at once, and interval only bounds the wait. While every machine
// is registered and some are still joining the swarm, the last step of
// coming up and a matter of a second or so, the bound is five times
// shorter (20ms at least), which is how soon a coordinator without
// blocking queries is asked again. A failed read is retried after the
// bound; the error of the last one is returned with ctx's.
func (c *Client) WatchMachines(ctx context.Context, ids []string, interval time.Duration, see func([]*cloudmlv1.Machine) bool) error {
	if interval <= 0 {
		interval = time.Second
	}
	fast := max(interval/5, min(interval, 20*time.Millisecond))
	t := time.NewTimer(interval)
	defer t.Stop()
	var last error
	var index uint64 // the last answer's, for a blocking query
	next := interval
	for {
		resp, err := c.machinesAfter(ctx, true, index, next)
		next = interval
		if err == nil {
			last = nil
			byID := map[string]*cloudmlv1.Machine{}
			for _, m := range resp.GetMachines() {
				byID[m.GetId()] = m
			}
			ms := make([]*cloudmlv1.Machine, len(ids))
			for i, id := range ids {
				if ms[i] = byID[id]; ms[i] == nil {
					ms[i] = &cloudmlv1.Machine{Id: id, State: cloudmlv1.MachineState_MACHINE_STATE_GONE, Message: "no longer listed"}
				}
			}
			if see(ms) {
				return nil
			}
			if joining(ms) {
				next = fast
			}
			if index = resp.GetIndex(); index != 0 {
				continue // the next read waits for a change itself
			}
		} else {
			last = err
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last poll: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// joining reports whether every machine is registered or ready and some
// are not ready yet: all that is left is the swarm join.
func joining(ms []*cloudmlv1.Machine) bool {
	some := false
	for _, m := range ms {
		switch m.GetState() {
		case cloudmlv1.MachineState_MACHINE_STATE_REGISTERED:
			some = true
		case cloudmlv1.MachineState_MACHINE_STATE_READY:
		default:
			return false
		}
	}
	return some
}
