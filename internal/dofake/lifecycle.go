package dofake

import (
	"context"
	"net/netip"
	"time"
)

// Booter turns droplets into machines: a test gives the server one that
// makes each droplet a network-namespace node booting its user-data.
type Booter interface {
	// Boot starts the machine of d (status "new", no addresses yet) with
	// its user-data, once Config.ActiveDelay has passed. It returns when the
	// machine has its addresses; the droplet then turns "active" with them
	// (a zero address is taken from the server's pools). Whatever the
	// machine runs next (the user-data) runs on its own until Halt. ctx is
	// canceled when the droplet is deleted or the server closes. An error
	// leaves the droplet "new" and counts in Stats.BootFailures. The
	// metadata service answers by source address only once Boot returned
	// (by path it answers from the create on).
	Boot(ctx context.Context, d Droplet, userData string) (Addresses, error)
	// Halt stops the machine of d. It is called once for every droplet
	// whose Boot was called, after Boot returned (with or without error),
	// when the droplet is deleted or the server closes.
	Halt(ctx context.Context, d Droplet) error
}

// Addresses are a booted droplet's IPv4 addresses.
type Addresses struct {
	Public, Private netip.Addr
}

// BootFuncs is a Booter made of two functions; a nil one does nothing.
type BootFuncs struct {
	BootFunc func(ctx context.Context, d Droplet, userData string) (Addresses, error)
	HaltFunc func(ctx context.Context, d Droplet) error
}

// Boot calls BootFunc.
func (b BootFuncs) Boot(ctx context.Context, d Droplet, userData string) (Addresses, error) {
	if b.BootFunc == nil {
		return Addresses{}, nil
	}
	return b.BootFunc(ctx, d, userData)
}

// Halt calls HaltFunc.
func (b BootFuncs) Halt(ctx context.Context, d Droplet) error {
	if b.HaltFunc == nil {
		return nil
	}
	return b.HaltFunc(ctx, d)
}

// haltTimeout bounds one Booter.Halt.
const haltTimeout = 2 * time.Minute

// startLifecycle runs d from "new" to "active": the delay, the Booter, the
// addresses. s.mu must be held.
func (s *Server) startLifecycle(d *droplet) {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	s.wg.Go(func() {
		defer close(d.booted)
		defer cancel()
		if s.cfg.ActiveDelay > 0 {
			t := time.NewTimer(s.cfg.ActiveDelay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		view, userData := d.view.clone(), d.userData
		d.bootCalled = s.cfg.Booter != nil
		s.mu.Unlock()
		var addrs Addresses
		if s.cfg.Booter != nil {
			var err error
			addrs, err = s.cfg.Booter.Boot(ctx, view, userData)
			if err != nil && ctx.Err() != nil {
				return // deleted or closed while booting
			}
			if err != nil {
				s.mu.Lock()
				s.stats.BootFailures++
				s.mu.Unlock()
				s.log.Warn("droplet boot failed", "id", view.ID, "error", err)
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if !addrs.Private.IsValid() {
			addrs.Private = s.nextPrivate(d.view.VPCUUID)
		}
		if !addrs.Public.IsValid() {
			addrs.Public = s.nextPublic()
		}
		d.view.PublicIPv4, d.view.PrivateIPv4 = addrs.Public, addrs.Private
		d.view.Status = "active"
		s.log.Debug("droplet active", "id", d.view.ID, "public", addrs.Public, "private", addrs.Private)
	})
}

// halt cancels d's boot and, once its lifecycle ended, halts its machine.
// The caller holds s.mu and has set d.halting.
func (s *Server) halt(d *droplet) {
	d.cancel()
	view := d.view.clone()
	s.wg.Go(func() {
		<-d.booted
		s.mu.Lock()
		due := d.bootCalled
		s.mu.Unlock()
		if !due {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), haltTimeout)
		defer cancel()
		if err := s.cfg.Booter.Halt(ctx, view); err != nil {
			s.log.Warn("droplet halt failed", "id", view.ID, "error", err)
		}
	})
}

// nextPublic takes the next address of the public pool (invalid once it
// is used up); s.mu must be held.
func (s *Server) nextPublic() netip.Addr {
	a := s.nextPub
	if !s.cfg.PublicPrefix.Contains(a) || !s.cfg.PublicPrefix.Contains(a.Next()) {
		return netip.Addr{} // the last address is the broadcast one
	}
	s.nextPub = a.Next()
	return a
}

// nextPrivate takes the next address of a VPC's range; s.mu must be held.
func (s *Server) nextPrivate(vpcID string) netip.Addr {
	v := s.vpc(vpcID)
	if v == nil {
		return netip.Addr{}
	}
	if !v.next.IsValid() {
		v.next = v.IPRange.Masked().Addr().Next().Next() // .1 is the gateway
	}
	a := v.next
	if !v.IPRange.Contains(a) || !v.IPRange.Contains(a.Next()) {
		return netip.Addr{}
	}
	v.next = a.Next()
	return a
}
