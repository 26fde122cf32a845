package dofake

import (
	"cmp"
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

// MaxUserData is the largest user_data the API accepts (64 KiB).
const MaxUserData = 64 << 10

// MaxMultiCreate is the most names one create may carry.
const MaxMultiCreate = 10

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9.\-]{1,255}$`)
	tagRE      = regexp.MustCompile(`^[a-zA-Z0-9_\-:]{1,255}$`)
)

// Droplet is the server's view of one droplet, for tests and the Booter.
type Droplet struct {
	ID        int
	Name      string
	Region    string
	Size      string
	Image     string // slug
	Tags      []string
	VPCUUID   string
	Status    string // "new" or "active"
	CreatedAt time.Time
	// PublicIPv4 and PrivateIPv4 are set once the droplet is active.
	PublicIPv4, PrivateIPv4 netip.Addr
	// SSHKeys are the keys the create named, as it named them (id or
	// fingerprint).
	SSHKeys []string
	// MetadataURL is this droplet's metadata service on the API listener
	// (path-prefix form): append /metadata/v1/id and so on.
	MetadataURL string
}

func (d Droplet) clone() Droplet {
	d.Tags, d.SSHKeys = slices.Clone(d.Tags), slices.Clone(d.SSHKeys)
	return d
}

// droplet is a droplet with its server-side state; s.mu protects it.
type droplet struct {
	view       Droplet
	userData   string
	publicKeys []string
	locked     bool // deleted, still visible for DeleteLag
	halting    bool // its halt has started (DELETE or Close)
	bootCalled bool // Booter.Boot was called: Halt is due
	cancel     func()
	booted     chan struct{} // closed when its lifecycle goroutine ends
}

type createRequest struct {
	Name     string            `json:"name"`
	Names    []string          `json:"names"`
	Region   string            `json:"region"`
	Size     string            `json:"size"`
	Image    json.RawMessage   `json:"image"`
	SSHKeys  []json.RawMessage `json:"ssh_keys"`
	UserData string            `json:"user_data"`
	Tags     []string          `json:"tags"`
	VPCUUID  string            `json:"vpc_uuid"`
}

func (s *Server) createDroplets(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
		return
	}
	multi := req.Names != nil
	names := req.Names
	if !multi {
		names = []string{req.Name}
	}
	im, keys, keyRefs, msg := s.checkCreate(&req, names)
	if msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "")
		return
	}
	if len(s.droplets)+len(names) > s.cfg.DropletLimit {
		s.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, "creating this/these droplet(s) will exceed your droplet limit")
		return
	}
	vpcID := req.VPCUUID
	if vpcID == "" {
		vpcID = s.defaultVPC(req.Region).ID
	}
	var out []apiDroplet
	var actions []apiLinkAction
	for _, name := range names {
		d := &droplet{
			view: Droplet{ID: s.nextID, Name: name, Region: req.Region, Size: req.Size, Image: im.Slug,
				Tags: slices.Clone(req.Tags), VPCUUID: vpcID, Status: "new", CreatedAt: time.Now().UTC().Truncate(time.Second),
				SSHKeys: slices.Clone(keyRefs), MetadataURL: fmt.Sprintf("%sdroplet/%d", s.url, s.nextID)},
			userData:   req.UserData,
			publicKeys: keys,
			booted:     make(chan struct{}),
		}
		if d.view.Tags == nil {
			d.view.Tags = []string{}
		}
		s.nextID++
		s.droplets[d.view.ID] = d
		for _, t := range req.Tags {
			s.tags[t] = true
		}
		s.stats.Created++
		out = append(out, s.dropletJSON(d))
		actions = append(actions, apiLinkAction{ID: s.nextAct, Rel: "create", HREF: fmt.Sprintf("http://%s/v2/actions/%d", r.Host, s.nextAct)})
		s.nextAct++
		s.startLifecycle(d)
		s.log.Debug("droplet created", "id", d.view.ID, "name", name, "tags", req.Tags)
	}
	s.mu.Unlock()
	links := apiLinks{Actions: actions}
	if multi {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplets": out, "links": links})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"droplet": out[0], "links": links})
}

// checkCreate validates a create as the API does and returns its image,
// the public keys and references of its SSH keys, or the 422 message.
func (s *Server) checkCreate(req *createRequest, names []string) (Image, []string, []string, string) {
	if len(names) == 0 || len(names) > MaxMultiCreate {
		return Image{}, nil, nil, fmt.Sprintf("names must hold 1 to %d names", MaxMultiCreate)
	}
	for _, n := range names {
		if !hostnameRE.MatchString(n) {
			return Image{}, nil, nil, "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
		}
	}
	reg, ok := s.region(req.Region)
	if !ok || !reg.Available {
		return Image{}, nil, nil, "You specified an invalid region for Droplet creation."
	}
	size, ok := s.size(req.Size)
	if !ok || !size.Available {
		return Image{}, nil, nil, "You specified an invalid size for Droplet creation."
	}
	if !slices.Contains(size.Regions, req.Region) {
		return Image{}, nil, nil, fmt.Sprintf("Size %s is not available in region %s.", req.Size, req.Region)
	}
	im, ok := s.findImage(req.Image)
	if !ok {
		return Image{}, nil, nil, "You specified an invalid image for Droplet creation."
	}
	if len(req.UserData) > MaxUserData {
		return Image{}, nil, nil, "user_data is too long: the maximum is 64 KiB"
	}
	for _, t := range req.Tags {
		if !tagRE.MatchString(t) {
			return Image{}, nil, nil, fmt.Sprintf("invalid tag name %q: tags may contain letters, numbers, colons, dashes and underscores", t)
		}
	}
	var keys, refs []string
	for _, raw := range req.SSHKeys {
		k, ref, ok := s.findKey(raw)
		if !ok {
			return Image{}, nil, nil, fmt.Sprintf("You specified an invalid ssh key (%s) for Droplet creation.", raw)
		}
		keys, refs = append(keys, k.PublicKey), append(refs, ref)
	}
	if req.VPCUUID != "" {
		s.mu.Lock()
		v := s.vpc(req.VPCUUID)
		s.mu.Unlock()
		if v == nil {
			return Image{}, nil, nil, "VPC " + req.VPCUUID + " not found."
		}
		if v.Region != req.Region {
			return Image{}, nil, nil, fmt.Sprintf("VPC %s is in region %s, not %s.", v.ID, v.Region, req.Region)
		}
	}
	return im, keys, refs, ""
}

// findImage resolves an image given as a slug (a JSON string) or an id.
func (s *Server) findImage(raw json.RawMessage) (Image, bool) {
	var slug string
	var id int
	if json.Unmarshal(raw, &slug) != nil && json.Unmarshal(raw, &id) != nil {
		return Image{}, false
	}
	i := slices.IndexFunc(s.cfg.Images, func(im Image) bool { return (slug != "" && im.Slug == slug) || (id != 0 && im.ID == id) })
	if i < 0 {
		return Image{}, false
	}
	return s.cfg.Images[i], true
}

// findKey resolves an SSH key given as an id or a fingerprint.
func (s *Server) findKey(raw json.RawMessage) (SSHKey, string, bool) {
	var fp string
	var id int
	if json.Unmarshal(raw, &fp) != nil && json.Unmarshal(raw, &id) != nil {
		return SSHKey{}, "", false
	}
	for _, k := range s.cfg.SSHKeys {
		if fp != "" && k.Fingerprint == fp {
			return k, fp, true
		}
		if id != 0 && k.ID == id {
			return k, strconv.Itoa(id), true
		}
	}
	return SSHKey{}, "", false
}

func (s *Server) getDroplet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.lookup(r.PathValue("id"))
	if d == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "")
		return
	}
	out := s.dropletJSON(d)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"droplet": out})
}

// lookup finds a droplet by its id in a path; s.mu must be held.
func (s *Server) lookup(id string) *droplet {
	n, err := strconv.Atoi(id)
	if err != nil {
		return nil
	}
	return s.droplets[n]
}

func (s *Server) listDroplets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tag, name := q.Get("tag_name"), q.Get("name")
	if tag != "" && name != "" {
		writeError(w, http.StatusBadRequest, "tag_name cannot be combined with name")
		return
	}
	gpus := q.Get("type") == "gpus"
	s.mu.Lock()
	var all []apiDroplet
	for _, d := range s.sorted() {
		if (tag != "" && !slices.Contains(d.view.Tags, tag)) || (name != "" && d.view.Name != name) {
			continue
		}
		if size, _ := s.size(d.view.Size); (size.GPUInfo != nil) != gpus {
			continue
		}
		all = append(all, s.dropletJSON(d))
	}
	s.mu.Unlock()
	if all == nil {
		all = []apiDroplet{}
	}
	items, links, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"droplets": items, "links": links, "meta": meta})
}

// sorted returns the droplets by id; s.mu must be held.
func (s *Server) sorted() []*droplet {
	all := make([]*droplet, 0, len(s.droplets))
	for _, d := range s.droplets {
		all = append(all, d)
	}
	slices.SortFunc(all, func(a, b *droplet) int { return cmp.Compare(a.view.ID, b.view.ID) })
	return all
}

func (s *Server) deleteDroplet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.lookup(r.PathValue("id"))
	if d == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "")
		return
	}
	s.remove(d)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteDropletsByTag(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		writeError(w, http.StatusBadRequest, "tag_name is required to delete droplets in bulk")
		return
	}
	if !tagRE.MatchString(tag) {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid tag name %q", tag))
		return
	}
	s.mu.Lock()
	for _, d := range s.sorted() {
		if slices.Contains(d.view.Tags, tag) {
			s.remove(d)
		}
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// remove deletes d from the API (at once, or after DeleteLag) and halts its
// machine. A droplet already deleted and still visible is left as it is,
// and its DELETE answers 204 again (this server's choice: what the real
// API answers then is not documented). s.mu must be held.
func (s *Server) remove(d *droplet) {
	if d.locked {
		return
	}
	if !d.halting {
		d.halting = true
		s.halt(d)
	}
	if s.cfg.DeleteLag == 0 {
		delete(s.droplets, d.view.ID)
		s.stats.Deleted++
		s.log.Debug("droplet deleted", "id", d.view.ID)
		return
	}
	d.locked = true
	s.wg.Go(func() {
		t := time.NewTimer(s.cfg.DeleteLag)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.droplets, d.view.ID)
		s.stats.Deleted++
		s.log.Debug("droplet deleted", "id", d.view.ID)
	})
}

// Droplets returns every droplet the API shows, by id.
func (s *Server) Droplets() []Droplet {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Droplet
	for _, d := range s.sorted() {
		out = append(out, d.view.clone())
	}
	return out
}

// Droplet returns the droplet with id, if the API shows it.
func (s *Server) Droplet(id int) (Droplet, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.droplets[id]
	if !ok {
		return Droplet{}, false
	}
	return d.view.clone(), true
}

// UserData returns the user_data droplet id was created with.
func (s *Server) UserData(id int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.droplets[id]
	if !ok {
		return "", false
	}
	return d.userData, true
}

// dropletJSON renders d as the API does; s.mu must be held.
func (s *Server) dropletJSON(d *droplet) apiDroplet {
	v := d.view
	size, _ := s.size(v.Size)
	reg, _ := s.region(v.Region)
	i := slices.IndexFunc(s.cfg.Images, func(im Image) bool { return im.Slug == v.Image })
	out := apiDroplet{
		ID: v.ID, Name: v.Name, Memory: size.Memory, Vcpus: size.Vcpus, Disk: size.Disk,
		Locked: d.locked, Status: v.Status, CreatedAt: v.CreatedAt.Format(time.RFC3339),
		Features: []string{"private_networking"}, BackupIDs: []int{}, SnapshotIDs: []int{},
		Image: s.imageJSON(s.cfg.Images[i]), VolumeIDs: []string{}, Size: size, SizeSlug: v.Size,
		Networks: apiNetworks{V4: []apiNetworkV4{}, V6: []struct{}{}}, Region: s.regionJSON(reg),
		Tags: slices.Clone(v.Tags), VPCUUID: v.VPCUUID,
	}
	if v.PrivateIPv4.IsValid() {
		out.Networks.V4 = append(out.Networks.V4, s.netV4(v.PrivateIPv4, "private", v.VPCUUID))
	}
	if v.PublicIPv4.IsValid() {
		out.Networks.V4 = append(out.Networks.V4, s.netV4(v.PublicIPv4, "public", ""))
	}
	return out
}

// netV4 describes one address with the netmask and gateway of the prefix
// it came from (the VPC's range, the public pool, or a /24 around it).
func (s *Server) netV4(a netip.Addr, typ, vpcID string) apiNetworkV4 {
	p := netip.PrefixFrom(a, 24).Masked()
	if v := s.vpc(vpcID); v != nil && v.IPRange.Contains(a) {
		p = v.IPRange
	} else if typ == "public" && s.cfg.PublicPrefix.Contains(a) {
		p = s.cfg.PublicPrefix.Masked()
	}
	return apiNetworkV4{IPAddress: a.String(), Netmask: netmask(p.Bits()), Gateway: p.Addr().Next().String(), Type: typ}
}

func netmask(bits int) string {
	m := ^uint32(0) << (32 - bits)
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

// macFor returns the MAC address the metadata service shows for interface
// iface (1 public, 2 private) of droplet id.
func macFor(id int, iface byte) string {
	return strings.ToLower(fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", byte(id>>24), byte(id>>16), byte(id>>8), byte(id), iface))
}
