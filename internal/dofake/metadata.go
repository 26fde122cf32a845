package dofake

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// nameservers are the resolvers DigitalOcean's metadata names.
var nameservers = []string{"67.207.67.2", "67.207.67.3"}

// mdView is what the metadata service shows of one droplet.
type mdView struct {
	d                  Droplet
	userData           string
	publicKeys         []string
	public, private    *apiNetworkV4
	publicMAC, privMAC string
}

// metadataByID serves /droplet/{id}/metadata/...: the path names the
// droplet, so in-process tests (all on 127.0.0.1) can reach each one's.
func (s *Server) metadataByID(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.lookup(r.PathValue("id"))
	s.mu.Unlock()
	s.serveMetadata(w, r, d)
}

// metadataBySource serves /metadata/... for the droplet whose public or
// private address the request comes from, as the real service answers each
// droplet at the same 169.254.169.254.
func (s *Server) metadataBySource(w http.ResponseWriter, r *http.Request) {
	var found *droplet
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a := ap.Addr().Unmap()
		s.mu.Lock()
		for _, d := range s.droplets {
			if !d.locked && (d.view.PublicIPv4 == a || d.view.PrivateIPv4 == a) {
				found = d
				break
			}
		}
		s.mu.Unlock()
	}
	s.serveMetadata(w, r, found)
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request, d *droplet) {
	s.mu.Lock()
	var v mdView
	ok := d != nil && !d.locked
	if ok {
		v = mdView{d: d.view.clone(), userData: d.userData, publicKeys: slices.Clone(d.publicKeys),
			publicMAC: macFor(d.view.ID, 1), privMAC: macFor(d.view.ID, 2)}
		if a := d.view.PublicIPv4; a.IsValid() {
			n := s.netV4(a, "public", "")
			v.public = &n
		}
		if a := d.view.PrivateIPv4; a.IsValid() {
			n := s.netV4(a, "private", d.view.VPCUUID)
			v.private = &n
		}
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "droplet not found", http.StatusNotFound)
		return
	}
	rest := r.PathValue("rest")
	switch {
	case rest == "v1.json":
		writeJSON(w, http.StatusOK, v.json())
	case rest == "v1":
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
	case strings.HasPrefix(rest, "v1/"):
		v.serveTree(w, r, strings.TrimPrefix(rest, "v1/"))
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// tree returns the metadata as path/value pairs in the service's order.
func (v mdView) tree() [][2]string {
	t := [][2]string{
		{"id", strconv.Itoa(v.d.ID)},
		{"hostname", v.d.Name},
		{"user-data", v.userData},
		{"vendor-data", ""},
		{"public-keys", strings.Join(v.publicKeys, "\n")},
		{"region", v.d.Region},
	}
	iface := func(kind string, n *apiNetworkV4, mac string) {
		if n == nil {
			return
		}
		p := "interfaces/" + kind + "/0/"
		t = append(t, [2]string{p + "mac", mac}, [2]string{p + "type", kind},
			[2]string{p + "ipv4/address", n.IPAddress}, [2]string{p + "ipv4/netmask", n.Netmask},
			[2]string{p + "ipv4/gateway", n.Gateway})
	}
	iface("public", v.public, v.publicMAC)
	iface("private", v.private, v.privMAC)
	t = append(t, [2]string{"dns/nameservers", strings.Join(nameservers, "\n")},
		[2]string{"floating_ip/ipv4/active", "false"},
		[2]string{"reserved_ip/ipv4/active", "false"})
	for _, tag := range v.d.Tags {
		t = append(t, [2]string{"tags/" + tag, tag})
	}
	return append(t, [2]string{"features/dhcp_enabled", "false"})
}

// alwaysDirs are listed in the index even when empty.
var alwaysDirs = []string{"interfaces", "dns", "floating_ip", "reserved_ip", "tags", "features"}

// serveTree answers a value (plain text), an index of a directory (one
// entry a line, directories with a trailing slash), or 301 for a directory
// asked for without its slash, as the real service does.
func (v mdView) serveTree(w http.ResponseWriter, r *http.Request, p string) {
	tree := v.tree()
	dir := strings.TrimSuffix(p, "/")
	isDir := dir == "" || slices.Contains(alwaysDirs, dir) ||
		slices.ContainsFunc(tree, func(kv [2]string) bool { return strings.HasPrefix(kv[0], dir+"/") })
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !strings.HasSuffix(p, "/") && p != "" {
		if i := slices.IndexFunc(tree, func(kv [2]string) bool { return kv[0] == p }); i >= 0 {
			w.Write([]byte(tree[i][1]))
			return
		}
		if isDir {
			http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
			return
		}
	}
	if !isDir {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	var entries []string
	add := func(e string) {
		if !slices.Contains(entries, e) {
			entries = append(entries, e)
		}
	}
	for _, kv := range tree {
		rest, ok := strings.CutPrefix(kv[0], prefix)
		if !ok {
			continue
		}
		if head, _, deeper := strings.Cut(rest, "/"); deeper {
			add(head + "/")
		} else {
			add(rest)
		}
	}
	if dir == "" {
		for _, d := range alwaysDirs {
			add(d + "/")
		}
	}
	w.Write([]byte(strings.Join(entries, "\n")))
}

type mdIPv4 struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
}

type mdInterface struct {
	IPv4 mdIPv4 `json:"ipv4"`
	MAC  string `json:"mac"`
	Type string `json:"type"`
}

type mdActive struct {
	Active bool `json:"active"`
}

// json returns /metadata/v1.json.
func (v mdView) json() map[string]any {
	ifaces := map[string][]mdInterface{"public": {}, "private": {}}
	for kind, n := range map[string]*apiNetworkV4{"public": v.public, "private": v.private} {
		if n != nil {
			mac := v.publicMAC
			if kind == "private" {
				mac = v.privMAC
			}
			ifaces[kind] = []mdInterface{{IPv4: mdIPv4{n.IPAddress, n.Netmask, n.Gateway}, MAC: mac, Type: kind}}
		}
	}
	keys := v.publicKeys
	if keys == nil {
		keys = []string{}
	}
	return map[string]any{
		"droplet_id":  v.d.ID,
		"hostname":    v.d.Name,
		"user_data":   v.userData,
		"vendor_data": "",
		"public_keys": keys,
		"auth_key":    "",
		"region":      v.d.Region,
		"interfaces":  ifaces,
		"floating_ip": map[string]mdActive{"ipv4": {}},
		"reserved_ip": map[string]mdActive{"ipv4": {}, "ipv6": {}},
		"dns":         map[string][]string{"nameservers": nameservers},
		"tags":        v.d.Tags,
		"features":    map[string]bool{"dhcp_enabled": false},
	}
}
