package dofake

import (
	"time"
)

// Endpoint names one API operation, for faults and request counts.
type Endpoint string

// The endpoints the server implements.
const (
	EndpointDropletsCreate      Endpoint = "droplets.create"        // POST /v2/droplets
	EndpointDropletsGet         Endpoint = "droplets.get"           // GET /v2/droplets/{id}
	EndpointDropletsList        Endpoint = "droplets.list"          // GET /v2/droplets
	EndpointDropletsDelete      Endpoint = "droplets.delete"        // DELETE /v2/droplets/{id}
	EndpointDropletsDeleteByTag Endpoint = "droplets.delete_by_tag" // DELETE /v2/droplets?tag_name=
	EndpointSizesList           Endpoint = "sizes.list"             // GET /v2/sizes
	EndpointRegionsList         Endpoint = "regions.list"           // GET /v2/regions
	EndpointAccountGet          Endpoint = "account.get"            // GET /v2/account
	EndpointTagsCreate          Endpoint = "tags.create"            // POST /v2/tags
	EndpointTagsGet             Endpoint = "tags.get"               // GET /v2/tags/{name}
	EndpointTagsTagResources    Endpoint = "tags.tag_resources"     // POST /v2/tags/{name}/resources
	EndpointTagsUntagResources  Endpoint = "tags.untag_resources"   // DELETE /v2/tags/{name}/resources
	EndpointVPCsList            Endpoint = "vpcs.list"              // GET /v2/vpcs
	EndpointVPCsCreate          Endpoint = "vpcs.create"            // POST /v2/vpcs
	EndpointVPCsGet             Endpoint = "vpcs.get"               // GET /v2/vpcs/{id}
	EndpointFirewallsList       Endpoint = "firewalls.list"         // GET /v2/firewalls
	EndpointFirewallsCreate     Endpoint = "firewalls.create"       // POST /v2/firewalls
	EndpointFirewallsGet        Endpoint = "firewalls.get"          // GET /v2/firewalls/{id}
	EndpointFirewallsUpdate     Endpoint = "firewalls.update"       // PUT /v2/firewalls/{id}
	EndpointFirewallsDelete     Endpoint = "firewalls.delete"       // DELETE /v2/firewalls/{id}
	EndpointMetadata            Endpoint = "metadata"               // GET /metadata/v1...
	EndpointUnknown             Endpoint = "unknown"                // anything else: 404
)

// Fault is an injected misbehaviour of one endpoint. The zero Fault lets
// requests through unchanged.
type Fault struct {
	// Delay holds each affected request this long before it takes effect
	// (a slow API); it ends early when the client gives up or the server
	// closes.
	Delay time.Duration
	// Status, when non-zero, is answered with DO's error body instead of
	// the real answer: 500, 503, 429 (with RetryAfter and exhausted rate
	// headers), 422 ...
	Status int
	// Message replaces the usual error message of Status.
	Message string
	// RetryAfter is sent as Retry-After (whole seconds, rounded up) with a
	// 429 or 503.
	RetryAfter time.Duration
	// Drop closes the connection without any answer.
	Drop bool
	// AfterEffect lets the request take effect first (the droplet is
	// created, the delete done), then applies Status or Drop: the client
	// cannot tell that it worked. Without it the request has no effect.
	AfterEffect bool
	// Skip lets this many matching requests through before the fault
	// starts.
	Skip int
	// Times is how many requests the fault affects; 0 means every one
	// until ClearFaults.
	Times int
}

// Injection is one fault installed by Inject.
type Injection struct {
	s     *Server
	fault Fault
	// The fields below are protected by s.mu.
	skipped int
	fired   int
	firedAt []time.Time
}

// Fired returns how many requests the fault has affected.
func (in *Injection) Fired() int {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	return in.fired
}

// FiredAt returns when (server clock) it affected each request.
func (in *Injection) FiredAt() []time.Time {
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	return append([]time.Time(nil), in.firedAt...)
}

// Inject installs f on ep behind the faults already there: an endpoint's
// faults apply one after the other, each once its predecessors are used
// up.
func (s *Server) Inject(ep Endpoint, f Fault) *Injection {
	in := &Injection{s: s, fault: f}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[ep] = append(s.faults[ep], in)
	return in
}

// ClearFaults removes every fault of ep (all endpoints with no argument).
func (s *Server) ClearFaults(eps ...Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(eps) == 0 {
		clear(s.faults)
	}
	for _, ep := range eps {
		delete(s.faults, ep)
	}
}

// takeFault returns the fault that applies to this request of ep, if any,
// and counts it. s.mu must be held.
func (s *Server) takeFault(ep Endpoint, now time.Time) (Fault, bool) {
	for _, in := range s.faults[ep] {
		if in.fault.Times > 0 && in.fired >= in.fault.Times {
			continue
		}
		if in.skipped < in.fault.Skip {
			in.skipped++
			return Fault{}, false
		}
		in.fired++
		in.firedAt = append(in.firedAt, now)
		s.stats.Faults[ep]++
		return in.fault, true
	}
	return Fault{}, false
}
