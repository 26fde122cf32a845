package dofake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Server is a running DigitalOcean API test server.
type Server struct {
	cfg  Config
	log  hclog.Logger
	url  string
	murl string // metadata-only listener, "" without one

	srvs []*http.Server
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu        sync.Mutex // protects everything below
	droplets  map[int]*droplet
	tags      map[string]bool
	vpcs      []*vpc
	firewalls []*Firewall
	faults    map[Endpoint][]*Injection
	stats     Stats
	nextID    int
	nextAct   int
	nextPub   netip.Addr
	rateStart time.Time
	rateUsed  int
	closed    bool
}

// Stats are counts for tests.
type Stats struct {
	// Created counts droplets the API created; Deleted those it removed
	// after a DELETE; Alive those it shows now.
	Created, Deleted, Alive int
	// BootFailures counts Booter.Boot errors.
	BootFailures int
	// Requests counts requests by endpoint, Faults the injected faults that
	// fired. Unauthorized counts requests refused with 401.
	Requests, Faults map[Endpoint]int
	Unauthorized     int
}

// Start validates cfg and starts serving.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	cfg.Sizes, cfg.Regions = slices.Clone(cfg.Sizes), slices.Clone(cfg.Regions) // the caller may reuse its slices
	cfg.Images, cfg.SSHKeys = slices.Clone(cfg.Images), slices.Clone(cfg.SSHKeys)
	for i := range cfg.Sizes {
		cfg.Sizes[i].Regions = slices.Clone(cfg.Sizes[i].Regions)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.Named("dofake"),
		done:     make(chan struct{}),
		droplets: map[int]*droplet{},
		tags:     map[string]bool{},
		faults:   map[Endpoint][]*Injection{},
		stats:    Stats{Requests: map[Endpoint]int{}, Faults: map[Endpoint]int{}},
		nextID:   500000001,
		nextAct:  2000000001,
		nextPub:  cfg.PublicPrefix.Masked().Addr().Next().Next(), // .1 is the gateway
	}
	for _, r := range cfg.Regions {
		if r.Available {
			s.addVPC(&vpc{Name: "default-" + r.Slug, Region: r.Slug, IPRange: r.DefaultVPC, Default: true})
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.url = "http://" + ln.Addr().String() + "/"
	s.serve(ln, s.apiMux())
	if cfg.MetadataAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetadataAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen on %s: %w", cfg.MetadataAddr, err)
		}
		s.murl = "http://" + mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metadata/{rest...}", s.handle(EndpointMetadata, false, s.metadataBySource))
		mux.Handle("/", s.handle(EndpointUnknown, false, notFound))
		s.serve(mln, mux)
	}
	s.log.Info("serving", "url", s.url, "metadata_url", s.murl)
	return s, nil
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.srvs = append(s.srvs, srv)
	s.wg.Go(func() { srv.Serve(ln) })
}

func (s *Server) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	api := func(pattern string, ep Endpoint, h http.HandlerFunc) { mux.Handle(pattern, s.handle(ep, true, h)) }
	api("POST /v2/droplets", EndpointDropletsCreate, s.createDroplets)
	api("GET /v2/droplets", EndpointDropletsList, s.listDroplets)
	api("GET /v2/droplets/{id}", EndpointDropletsGet, s.getDroplet)
	api("DELETE /v2/droplets/{id}", EndpointDropletsDelete, s.deleteDroplet)
	api("DELETE /v2/droplets", EndpointDropletsDeleteByTag, s.deleteDropletsByTag)
	api("GET /v2/sizes", EndpointSizesList, s.listSizes)
	api("GET /v2/regions", EndpointRegionsList, s.listRegions)
	api("GET /v2/account", EndpointAccountGet, s.getAccount)
	api("POST /v2/tags", EndpointTagsCreate, s.createTag)
	api("GET /v2/tags/{name}", EndpointTagsGet, s.getTag)
	api("POST /v2/tags/{name}/resources", EndpointTagsTagResources, s.tagResources)
	api("DELETE /v2/tags/{name}/resources", EndpointTagsUntagResources, s.untagResources)
	api("GET /v2/vpcs", EndpointVPCsList, s.listVPCs)
	api("POST /v2/vpcs", EndpointVPCsCreate, s.createVPC)
	api("GET /v2/vpcs/{id}", EndpointVPCsGet, s.getVPC)
	api("GET /v2/firewalls", EndpointFirewallsList, s.listFirewalls)
	api("POST /v2/firewalls", EndpointFirewallsCreate, s.createFirewall)
	api("GET /v2/firewalls/{id}", EndpointFirewallsGet, s.getFirewall)
	api("PUT /v2/firewalls/{id}", EndpointFirewallsUpdate, s.updateFirewall)
	api("DELETE /v2/firewalls/{id}", EndpointFirewallsDelete, s.deleteFirewall)
	mux.Handle("GET /metadata/{rest...}", s.handle(EndpointMetadata, false, s.metadataBySource))
	mux.Handle("GET /droplet/{id}/metadata/{rest...}", s.handle(EndpointMetadata, false, s.metadataByID))
	api("/", EndpointUnknown, notFound)
	return mux
}

func notFound(w http.ResponseWriter, _ *http.Request) { writeError(w, http.StatusNotFound, "") }

// URL returns the API's base URL, with the trailing slash
// godo.SetBaseURL wants.
func (s *Server) URL() string { return s.url }

// MetadataURL returns the base URL of the metadata-only listener (no
// trailing slash; append /metadata/v1/...), or "" without one.
func (s *Server) MetadataURL() string { return s.murl }

// Token returns the accepted API token.
func (s *Server) Token() string { return s.cfg.Token }

// Stats returns a copy of the counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests, st.Faults = maps.Clone(s.stats.Requests), maps.Clone(s.stats.Faults)
	st.Alive = len(s.droplets)
	return st
}

// Close stops serving (in-flight requests end, delays are cut short),
// cancels every boot, halts every droplet's machine that was booted and
// waits for all of it. Stats stay readable.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	for _, srv := range s.srvs {
		srv.Shutdown(context.Background()) // handlers see s.done and return
	}
	s.mu.Lock()
	left := 0
	for _, d := range s.droplets {
		if !d.halting {
			d.halting = true
			s.halt(d)
			left++
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.log.Info("closed", "droplets_left", left)
}

// handle wraps an endpoint's handler with what every request goes through:
// a request id, the count, the token check (api), the rate headers and
// the injected faults.
func (s *Server) handle(ep Endpoint, api bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", newUUID())
		now := time.Now()
		s.mu.Lock()
		s.stats.Requests[ep]++
		authorized := !api || r.Header.Get("Authorization") == "Bearer "+s.cfg.Token
		if !authorized {
			s.stats.Unauthorized++
		}
		var limited bool
		var reset time.Time
		if api {
			limited, reset = s.countRate(w, now)
		}
		var f Fault
		var faulty bool
		if authorized && !limited {
			f, faulty = s.takeFault(ep, now)
		}
		s.mu.Unlock()
		switch {
		case !authorized:
			writeError(w, http.StatusUnauthorized, "")
			return
		case limited:
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(time.Until(reset).Seconds()))))
			writeError(w, http.StatusTooManyRequests, "")
			return
		case !faulty:
			h(w, r)
			return
		}
		s.log.Debug("fault", "endpoint", ep, "fault", fmt.Sprintf("%+v", f))
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.done:
				t.Stop()
				return
			}
		}
		var rec *recorder
		if f.AfterEffect {
			rec = &recorder{header: http.Header{}}
			h(rec, r)
		}
		switch {
		case f.Drop:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2 or no hijacker: abort the stream
		case f.Status != 0:
			if f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
			}
			if f.Status == http.StatusTooManyRequests {
				w.Header().Set("Ratelimit-Remaining", "0")
				w.Header().Set("Ratelimit-Reset", strconv.FormatInt(now.Add(f.RetryAfter).Unix(), 10))
			}
			writeError(w, f.Status, f.Message)
		case rec != nil:
			rec.copyTo(w)
		default:
			h(w, r) // a pure delay
		}
	})
}

// countRate counts one request against the hourly budget and sets the
// rate headers; it reports whether the budget is spent and enforced.
// s.mu must be held.
func (s *Server) countRate(w http.ResponseWriter, now time.Time) (bool, time.Time) {
	if s.rateStart.IsZero() || now.Sub(s.rateStart) >= time.Hour {
		s.rateStart, s.rateUsed = now, 0
	}
	reset := s.rateStart.Add(time.Hour)
	limited := s.cfg.EnforceRateLimit && s.rateUsed >= s.cfg.RateLimit
	if !limited {
		s.rateUsed++
	}
	w.Header().Set("Ratelimit-Limit", strconv.Itoa(s.cfg.RateLimit))
	w.Header().Set("Ratelimit-Remaining", strconv.Itoa(max(s.cfg.RateLimit-s.rateUsed, 0)))
	w.Header().Set("Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	return limited, reset
}

// recorder takes the answer of a request whose answer a fault replaces.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func (r *recorder) copyTo(w http.ResponseWriter) {
	maps.Copy(w.Header(), r.header)
	w.WriteHeader(cmp.Or(r.status, http.StatusOK))
	w.Write(r.body.Bytes())
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
