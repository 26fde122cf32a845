package dofake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cloud Firewalls, as godo's FirewallsService sends and decodes them. The
// API checks what a firewall names: its tags (and the tags of its rules'
// sources and destinations) must exist, its droplet ids too. It stores
// protocols in lowercase, "all" ports (and an ICMP rule's, always) as "0",
// and adds "action":"allow" to a rule without one. Names need not be
// unique, so a create whose answer was lost and that is sent again makes
// a second firewall, as on the real API. Rules are not enforced: the
// server's droplets are not filtered.

// Firewall limits of the API.
const (
	// MaxFirewallTags and MaxFirewallDroplets are the most tags and
	// droplet ids one firewall may be applied to.
	MaxFirewallTags     = 5
	MaxFirewallDroplets = 10
	// MaxFirewallRules is the most inbound plus outbound rules.
	MaxFirewallRules = 50
)

// firewallNameRE is what the API allows in a firewall name: it starts with
// a letter or digit, then letters, digits, '.' and '-' (no '_' or ':').
var firewallNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.\-]{0,254}$`)

// FirewallTarget is where a rule admits traffic from (inbound) or lets
// it go to (outbound).
type FirewallTarget struct {
	Addresses        []string `json:"addresses,omitempty"`
	Tags             []string `json:"tags,omitempty"`
	DropletIDs       []int    `json:"droplet_ids,omitempty"`
	LoadBalancerUIDs []string `json:"load_balancer_uids,omitempty"`
	KubernetesIDs    []string `json:"kubernetes_ids,omitempty"`
}

func (t FirewallTarget) clone() FirewallTarget {
	t.Addresses, t.Tags, t.DropletIDs = slices.Clone(t.Addresses), slices.Clone(t.Tags), slices.Clone(t.DropletIDs)
	t.LoadBalancerUIDs, t.KubernetesIDs = slices.Clone(t.LoadBalancerUIDs), slices.Clone(t.KubernetesIDs)
	return t
}

// FirewallRule is one rule as the server stores it: Protocol "tcp", "udp"
// or "icmp", Ports "0" (all), "22" or "8000-9000", Action "allow" or
// "deny", and Sources (inbound) or Destinations (outbound).
type FirewallRule struct {
	Protocol     string          `json:"protocol"`
	Ports        string          `json:"ports"`
	Sources      *FirewallTarget `json:"sources,omitempty"`
	Destinations *FirewallTarget `json:"destinations,omitempty"`
	Action       string          `json:"action"`
}

func (r FirewallRule) clone() FirewallRule {
	if r.Sources != nil {
		s := r.Sources.clone()
		r.Sources = &s
	}
	if r.Destinations != nil {
		d := r.Destinations.clone()
		r.Destinations = &d
	}
	return r
}

// Firewall is the server's view of one firewall, for tests.
type Firewall struct {
	ID, Name      string
	InboundRules  []FirewallRule
	OutboundRules []FirewallRule
	Tags          []string
	DropletIDs    []int
	CreatedAt     time.Time
}

func (f Firewall) clone() Firewall {
	f.Tags, f.DropletIDs = slices.Clone(f.Tags), slices.Clone(f.DropletIDs)
	f.InboundRules, f.OutboundRules = cloneRules(f.InboundRules), cloneRules(f.OutboundRules)
	return f
}

func cloneRules(rs []FirewallRule) []FirewallRule {
	if rs == nil {
		return nil
	}
	out := make([]FirewallRule, len(rs))
	for i, r := range rs {
		out[i] = r.clone()
	}
	return out
}

type apiPendingChange struct {
	DropletID int    `json:"droplet_id"`
	Removing  bool   `json:"removing"`
	Status    string `json:"status"`
}

type apiFirewall struct {
	ID             string             `json:"id"`
	Name           string             `json:"name"`
	Status         string             `json:"status"`
	InboundRules   []FirewallRule     `json:"inbound_rules"`
	OutboundRules  []FirewallRule     `json:"outbound_rules"`
	DropletIDs     []int              `json:"droplet_ids"`
	Tags           []string           `json:"tags"`
	CreatedAt      string             `json:"created_at"`
	PendingChanges []apiPendingChange `json:"pending_changes"`
}

// firewallJSON renders f; rules are applied at once (status succeeded).
func firewallJSON(f *Firewall) apiFirewall {
	c := f.clone()
	out := apiFirewall{ID: c.ID, Name: c.Name, Status: "succeeded", InboundRules: c.InboundRules, OutboundRules: c.OutboundRules,
		DropletIDs: c.DropletIDs, Tags: c.Tags, CreatedAt: c.CreatedAt.Format(time.RFC3339), PendingChanges: []apiPendingChange{}}
	if out.InboundRules == nil {
		out.InboundRules = []FirewallRule{}
	}
	if out.OutboundRules == nil {
		out.OutboundRules = []FirewallRule{}
	}
	if out.DropletIDs == nil {
		out.DropletIDs = []int{}
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	return out
}

// Firewalls returns every firewall, oldest first.
func (s *Server) Firewalls() []Firewall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Firewall, 0, len(s.firewalls))
	for _, f := range s.firewalls {
		out = append(out, f.clone())
	}
	return out
}

// firewall finds a firewall by id; s.mu must be held.
func (s *Server) firewall(id string) *Firewall {
	i := slices.IndexFunc(s.firewalls, func(f *Firewall) bool { return f.ID == id })
	if i < 0 {
		return nil
	}
	return s.firewalls[i]
}

type firewallRequest struct {
	Name          string         `json:"name"`
	InboundRules  []FirewallRule `json:"inbound_rules"`
	OutboundRules []FirewallRule `json:"outbound_rules"`
	DropletIDs    []int          `json:"droplet_ids"`
	Tags          []string       `json:"tags"`
}

// checkFirewall validates req as the API does, normalizing its rules, and
// returns the 422 message, "" if it is fine. s.mu must be held.
func (s *Server) checkFirewall(req *firewallRequest) string {
	if !firewallNameRE.MatchString(req.Name) {
		return "name must begin with a letter or digit and hold only letters, digits, '.' and '-'"
	}
	n := len(req.InboundRules) + len(req.OutboundRules)
	switch {
	case n == 0:
		return "must have at least one rule"
	case n > MaxFirewallRules:
		return fmt.Sprintf("a firewall may have at most %d rules", MaxFirewallRules)
	case len(req.Tags) > MaxFirewallTags:
		return fmt.Sprintf("a firewall may be applied to at most %d tags", MaxFirewallTags)
	case len(req.DropletIDs) > MaxFirewallDroplets:
		return fmt.Sprintf("a firewall may be applied to at most %d droplets", MaxFirewallDroplets)
	}
	if msg := s.checkTargetRefs(req.Tags, req.DropletIDs); msg != "" {
		return msg
	}
	for i := range req.InboundRules {
		r := &req.InboundRules[i]
		if r.Sources == nil || r.Destinations != nil {
			return "an inbound rule needs sources, and no destinations"
		}
		if msg := s.checkRule(r, r.Sources); msg != "" {
			return "inbound rule: " + msg
		}
	}
	for i := range req.OutboundRules {
		r := &req.OutboundRules[i]
		if r.Destinations == nil || r.Sources != nil {
			return "an outbound rule needs destinations, and no sources"
		}
		if msg := s.checkRule(r, r.Destinations); msg != "" {
			return "outbound rule: " + msg
		}
	}
	return ""
}

// checkRule checks and normalizes one rule; s.mu must be held.
func (s *Server) checkRule(r *FirewallRule, t *FirewallTarget) string {
	r.Protocol = strings.ToLower(r.Protocol)
	switch r.Action {
	case "":
		r.Action = "allow"
	case "allow", "deny":
	default:
		return fmt.Sprintf("action %q is neither allow nor deny", r.Action)
	}
	switch r.Protocol {
	case "icmp":
		r.Ports = "0"
	case "tcp", "udp":
		if msg := checkPorts(r.Ports); msg != "" {
			return msg
		}
		if r.Ports == "all" {
			r.Ports = "0"
		}
	default:
		return fmt.Sprintf("protocol %q is not tcp, udp or icmp", r.Protocol)
	}
	for _, a := range t.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Sprintf("address %q is not an IP address or CIDR", a)
			}
		}
	}
	if len(t.LoadBalancerUIDs) > 0 || len(t.KubernetesIDs) > 0 {
		return "load balancers and Kubernetes clusters are not supported by this test server"
	}
	return s.checkTargetRefs(t.Tags, t.DropletIDs)
}

// checkPorts checks a tcp or udp rule's ports: "all", "0", "N" or "N-M"
// within 1 to 65535.
func checkPorts(p string) string {
	if p == "all" || p == "0" {
		return ""
	}
	lo, hi, isRange := strings.Cut(p, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return fmt.Sprintf("ports %q: want all, a port or a range of ports (1-65535)", p)
	}
	return ""
}

// checkTargetRefs checks that tags and droplets exist; s.mu must be held.
func (s *Server) checkTargetRefs(tags []string, ids []int) string {
	for _, t := range tags {
		if !s.tags[t] {
			return fmt.Sprintf("tag %s does not exist", t)
		}
	}
	for _, id := range ids {
		if d := s.droplets[id]; d == nil {
			return fmt.Sprintf("droplet %d does not exist", id)
		}
	}
	return ""
}

// decodeFirewall reads a firewall request body; it answers 400 itself and
// returns false for one that is not JSON.
func decodeFirewall(w http.ResponseWriter, r *http.Request) (firewallRequest, bool) {
	var req firewallRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
		return req, false
	}
	return req, true
}

func (s *Server) listFirewalls(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	all := make([]apiFirewall, 0, len(s.firewalls))
	for _, f := range s.firewalls {
		all = append(all, firewallJSON(f))
	}
	s.mu.Unlock()
	items, links, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"firewalls": items, "links": links, "meta": meta})
}

func (s *Server) getFirewall(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.firewall(r.PathValue("id"))
	var out apiFirewall
	if f != nil {
		out = firewallJSON(f)
	}
	s.mu.Unlock()
	if f == nil {
		writeError(w, http.StatusNotFound, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"firewall": out})
}

func (s *Server) createFirewall(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeFirewall(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg := s.checkFirewall(&req); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	f := &Firewall{ID: newUUID(), Name: req.Name, InboundRules: req.InboundRules, OutboundRules: req.OutboundRules,
		Tags: slices.Clone(req.Tags), DropletIDs: slices.Clone(req.DropletIDs), CreatedAt: time.Now().UTC().Truncate(time.Second)}
	s.firewalls = append(s.firewalls, f)
	s.log.Debug("firewall created", "id", f.ID, "name", f.Name, "tags", f.Tags)
	writeJSON(w, http.StatusAccepted, map[string]any{"firewall": firewallJSON(f)})
}

// updateFirewall replaces the whole firewall, as the API's PUT does: a
// field left out (tags, droplet_ids, a rule list) is emptied.
func (s *Server) updateFirewall(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeFirewall(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.firewall(r.PathValue("id"))
	if f == nil {
		writeError(w, http.StatusNotFound, "")
		return
	}
	if msg := s.checkFirewall(&req); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	f.Name, f.InboundRules, f.OutboundRules = req.Name, req.InboundRules, req.OutboundRules
	f.Tags, f.DropletIDs = slices.Clone(req.Tags), slices.Clone(req.DropletIDs)
	s.log.Debug("firewall updated", "id", f.ID, "name", f.Name, "tags", f.Tags)
	writeJSON(w, http.StatusOK, map[string]any{"firewall": firewallJSON(f)})
}

func (s *Server) deleteFirewall(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.firewalls, func(f *Firewall) bool { return f.ID == id })
	if i < 0 {
		writeError(w, http.StatusNotFound, "")
		return
	}
	s.firewalls = slices.Delete(s.firewalls, i, i+1)
	w.WriteHeader(http.StatusNoContent)
}
