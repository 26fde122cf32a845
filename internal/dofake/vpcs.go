package dofake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

var vpcNameRE = regexp.MustCompile(`^[a-zA-Z0-9.\-]{1,255}$`)

var rfc1918 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// vpc is one VPC; s.mu protects it.
type vpc struct {
	ID, Name, Description, Region string
	IPRange                       netip.Prefix
	Default                       bool
	CreatedAt                     time.Time
	next                          netip.Addr // next private address to hand out
}

type apiVPC struct {
	ID          string `json:"id"`
	URN         string `json:"urn"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Region      string `json:"region"`
	IPRange     string `json:"ip_range"`
	CreatedAt   string `json:"created_at"`
	Default     bool   `json:"default"`
}

func (v *vpc) json() apiVPC {
	return apiVPC{ID: v.ID, URN: "do:vpc:" + v.ID, Name: v.Name, Description: v.Description, Region: v.Region,
		IPRange: v.IPRange.String(), CreatedAt: v.CreatedAt.Format(time.RFC3339), Default: v.Default}
}

// addVPC gives v an id and, without one, a free /20 of 10.0.0.0/8 from
// 10.120.0.0 up; s.mu must be held (or s not yet shared).
func (s *Server) addVPC(v *vpc) {
	v.ID, v.CreatedAt = newUUID(), time.Now().UTC().Truncate(time.Second)
	if !v.IPRange.IsValid() {
		for p := netip.MustParsePrefix("10.120.0.0/20"); ; {
			if !s.overlaps(p) {
				v.IPRange = p
				break
			}
			b := p.Addr().As4()
			next := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			next += 1 << 12
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(next >> 24), byte(next >> 16), byte(next >> 8), byte(next)}), 20)
		}
	}
	s.vpcs = append(s.vpcs, v)
}

func (s *Server) overlaps(p netip.Prefix) bool {
	return slices.ContainsFunc(s.vpcs, func(v *vpc) bool { return v.IPRange.Overlaps(p) })
}

// vpc finds a VPC by id; s.mu must be held.
func (s *Server) vpc(id string) *vpc {
	i := slices.IndexFunc(s.vpcs, func(v *vpc) bool { return v.ID == id })
	if i < 0 {
		return nil
	}
	return s.vpcs[i]
}

// defaultVPC returns a region's default VPC; s.mu must be held.
func (s *Server) defaultVPC(region string) *vpc {
	i := slices.IndexFunc(s.vpcs, func(v *vpc) bool { return v.Default && v.Region == region })
	return s.vpcs[i] // every available region has one
}

// VPCs returns the ids of every VPC, defaults first.
func (s *Server) VPCs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, v := range s.vpcs {
		ids = append(ids, v.ID)
	}
	return ids
}

func (s *Server) listVPCs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	all := make([]apiVPC, 0, len(s.vpcs))
	for _, v := range s.vpcs {
		all = append(all, v.json())
	}
	s.mu.Unlock()
	items, links, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"vpcs": items, "links": links, "meta": meta})
}

func (s *Server) getVPC(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.vpc(r.PathValue("id"))
	var out apiVPC
	if v != nil {
		out = v.json()
	}
	s.mu.Unlock()
	if v == nil {
		writeError(w, http.StatusNotFound, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"vpc": out})
}

func (s *Server) createVPC(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string `json:"name"`
		Region      string `json:"region"`
		Description string `json:"description"`
		IPRange     string `json:"ip_range"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
		return
	}
	fail := func(format string, a ...any) {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf(format, a...))
	}
	if !vpcNameRE.MatchString(req.Name) {
		fail("name may contain only letters, numbers, dashes and periods")
		return
	}
	if reg, ok := s.region(req.Region); !ok || !reg.Available {
		fail("invalid region %q", req.Region)
		return
	}
	var p netip.Prefix
	if req.IPRange != "" {
		var err error
		p, err = netip.ParsePrefix(req.IPRange)
		if err != nil || !p.Addr().Is4() || p != p.Masked() || p.Bits() < 16 || p.Bits() > 28 ||
			!slices.ContainsFunc(rfc1918, func(q netip.Prefix) bool { return q.Contains(p.Addr()) && q.Bits() <= p.Bits() }) {
			fail("ip_range %q must be an RFC 1918 network between /16 and /28", req.IPRange)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.vpcs, func(v *vpc) bool { return v.Name == req.Name }) {
		fail("a VPC named %s already exists", req.Name)
		return
	}
	if p.IsValid() && s.overlaps(p) {
		fail("ip_range %s overlaps another VPC", p)
		return
	}
	v := &vpc{Name: req.Name, Region: req.Region, Description: req.Description, IPRange: p}
	s.addVPC(v)
	writeJSON(w, http.StatusCreated, map[string]any{"vpc": v.json()})
}
