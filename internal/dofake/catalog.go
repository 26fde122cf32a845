package dofake

import (
	"net/http"
	"net/netip"
	"slices"
)

// Size is a droplet size as GET /v2/sizes shows it.
type Size struct {
	Slug         string   `json:"slug"`
	Memory       int      `json:"memory"` // MiB
	Vcpus        int      `json:"vcpus"`
	Disk         int      `json:"disk"`     // GB
	Transfer     float64  `json:"transfer"` // TB per month
	PriceMonthly float64  `json:"price_monthly"`
	PriceHourly  float64  `json:"price_hourly"`
	Regions      []string `json:"regions"`
	Available    bool     `json:"available"`
	Description  string   `json:"description"`
	GPUInfo      *GPUInfo `json:"gpu_info,omitempty"`
}

// GPUInfo describes the GPUs of a GPU size; such droplets are listed only
// with type=gpus.
type GPUInfo struct {
	Count int    `json:"count"`
	Model string `json:"model"`
	VRAM  struct {
		Amount int    `json:"amount"`
		Unit   string `json:"unit"`
	} `json:"vram"`
}

// Region is a datacenter region; its sizes list is derived from Sizes.
type Region struct {
	Slug      string
	Name      string
	Available bool
	// DefaultVPC is the ip_range of the region's default VPC (zero: the
	// server picks a free /20).
	DefaultVPC netip.Prefix
}

// Image is a distribution image droplets can be created from, by slug or id.
type Image struct {
	ID            int
	Slug          string
	Name          string
	Distribution  string
	MinDiskSize   int
	SizeGigabytes float64
	Description   string
}

// SSHKey is a key of the account; a create names it by id or fingerprint.
type SSHKey struct {
	ID          int
	Fingerprint string
	Name        string
	PublicKey   string
}

var regionFeatures = []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"}

// DefaultRegions returns a realistic set of regions; ams2 is unavailable.
func DefaultRegions() []Region {
	r := func(slug, name, vpc string) Region {
		return Region{Slug: slug, Name: name, Available: true, DefaultVPC: netip.MustParsePrefix(vpc)}
	}
	return []Region{
		r("nyc1", "New York 1", "10.116.0.0/20"),
		r("nyc2", "New York 2", "10.100.0.0/20"),
		r("nyc3", "New York 3", "10.108.0.0/20"),
		r("sfo3", "San Francisco 3", "10.124.0.0/20"),
		r("ams3", "Amsterdam 3", "10.110.0.0/20"),
		r("lon1", "London 1", "10.106.0.0/20"),
		r("fra1", "Frankfurt 1", "10.114.0.0/20"),
		r("tor1", "Toronto 1", "10.118.0.0/20"),
		r("sgp1", "Singapore 1", "10.104.0.0/20"),
		r("blr1", "Bangalore 1", "10.122.0.0/20"),
		r("syd1", "Sydney 1", "10.126.0.0/20"),
		{Slug: "ams2", Name: "Amsterdam 2", Available: false},
	}
}

// DefaultSizes returns a realistic handful of sizes with list prices:
// Basic (s-), General Purpose (g-), CPU-Optimized (c-), Memory-Optimized
// (m-) and one GPU size.
func DefaultSizes() []Size {
	std := []string{"nyc1", "nyc3", "sfo3", "ams3", "lon1", "fra1", "tor1", "sgp1", "blr1", "syd1"}
	s := func(slug string, mem, vcpus, disk int, transfer, monthly, hourly float64, desc string) Size {
		return Size{Slug: slug, Memory: mem, Vcpus: vcpus, Disk: disk, Transfer: transfer,
			PriceMonthly: monthly, PriceHourly: hourly, Regions: slices.Clone(std), Available: true, Description: desc}
	}
	c16 := s("c-16", 32768, 16, 200, 7, 336, 0.5, "CPU-Optimized")
	c16.Regions = slices.DeleteFunc(c16.Regions, func(r string) bool { return r == "blr1" || r == "syd1" })
	gpu := s("gpu-h100x1-80gb", 245760, 20, 720, 15, 2278.08, 3.39, "H100 GPU - 1X")
	gpu.Regions = []string{"nyc2", "tor1"}
	gpu.GPUInfo = &GPUInfo{Count: 1, Model: "nvidia_h100"}
	gpu.GPUInfo.VRAM.Amount, gpu.GPUInfo.VRAM.Unit = 80, "gib"
	return []Size{
		s("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4, 0.00595, "Basic"),
		s("s-1vcpu-1gb", 1024, 1, 25, 1, 6, 0.00893, "Basic"),
		s("s-1vcpu-2gb", 2048, 1, 50, 2, 12, 0.01786, "Basic"),
		s("s-2vcpu-2gb", 2048, 2, 60, 3, 18, 0.02679, "Basic"),
		s("s-2vcpu-4gb", 4096, 2, 80, 4, 24, 0.03571, "Basic"),
		s("s-4vcpu-8gb", 8192, 4, 160, 5, 48, 0.07143, "Basic"),
		s("s-8vcpu-16gb", 16384, 8, 320, 6, 96, 0.14286, "Basic"),
		s("g-2vcpu-8gb", 8192, 2, 25, 4, 63, 0.09375, "General Purpose"),
		s("c-2", 4096, 2, 25, 4, 42, 0.0625, "CPU-Optimized"),
		s("c-4", 8192, 4, 50, 5, 84, 0.125, "CPU-Optimized"),
		s("c-8", 16384, 8, 100, 6, 168, 0.25, "CPU-Optimized"),
		c16,
		s("m-2vcpu-16gb", 16384, 2, 50, 4, 84, 0.125, "Memory-Optimized"),
		gpu,
	}
}

// DefaultImages returns the Ubuntu LTS, Debian and Docker images.
func DefaultImages() []Image {
	return []Image{
		{ID: 160000001, Slug: "ubuntu-24-04-x64", Name: "24.04 (LTS) x64", Distribution: "Ubuntu", MinDiskSize: 7, SizeGigabytes: 2.36, Description: "Ubuntu 24.04 (LTS) x64"},
		{ID: 160000002, Slug: "ubuntu-22-04-x64", Name: "22.04 (LTS) x64", Distribution: "Ubuntu", MinDiskSize: 7, SizeGigabytes: 2.14, Description: "Ubuntu 22.04 (LTS) x64"},
		{ID: 160000003, Slug: "debian-12-x64", Name: "12 x64", Distribution: "Debian", MinDiskSize: 7, SizeGigabytes: 1.1, Description: "Debian 12 x64 (bookworm)"},
		{ID: 160000004, Slug: "docker-20-04", Name: "Docker on Ubuntu 22.04", Distribution: "Ubuntu", MinDiskSize: 15, SizeGigabytes: 4.2, Description: "Docker, preinstalled"},
	}
}

func (s *Server) size(slug string) (Size, bool) {
	i := slices.IndexFunc(s.cfg.Sizes, func(z Size) bool { return z.Slug == slug })
	if i < 0 {
		return Size{}, false
	}
	return s.cfg.Sizes[i], true
}

func (s *Server) region(slug string) (Region, bool) {
	i := slices.IndexFunc(s.cfg.Regions, func(r Region) bool { return r.Slug == slug })
	if i < 0 {
		return Region{}, false
	}
	return s.cfg.Regions[i], true
}

func (s *Server) regionJSON(r Region) apiRegion {
	out := apiRegion{Slug: r.Slug, Name: r.Name, Available: r.Available, Sizes: []string{}, Features: regionFeatures}
	if r.Available {
		for _, z := range s.cfg.Sizes {
			if z.Available && slices.Contains(z.Regions, r.Slug) {
				out.Sizes = append(out.Sizes, z.Slug)
			}
		}
	}
	return out
}

func (s *Server) imageJSON(im Image) apiImage {
	var regions []string
	for _, r := range s.cfg.Regions {
		if r.Available {
			regions = append(regions, r.Slug)
		}
	}
	return apiImage{ID: im.ID, Name: im.Name, Distribution: im.Distribution, Slug: im.Slug, Public: true,
		Regions: regions, CreatedAt: "2024-04-25T00:00:00Z", MinDiskSize: im.MinDiskSize, Type: "base",
		SizeGigabytes: im.SizeGigabytes, Description: im.Description, Tags: []string{}, Status: "available"}
}

func (s *Server) listSizes(w http.ResponseWriter, r *http.Request) {
	items, links, meta, ok := paginate(w, r, s.cfg.Sizes)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sizes": items, "links": links, "meta": meta})
}

func (s *Server) listRegions(w http.ResponseWriter, r *http.Request) {
	all := make([]apiRegion, 0, len(s.cfg.Regions))
	for _, rg := range s.cfg.Regions {
		all = append(all, s.regionJSON(rg))
	}
	items, links, meta, ok := paginate(w, r, all)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"regions": items, "links": links, "meta": meta})
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{
		"droplet_limit":     s.cfg.DropletLimit,
		"floating_ip_limit": 3,
		"reserved_ip_limit": 3,
		"volume_limit":      100,
		"email":             "dofake@example.com",
		"uuid":              "5a1b3c2d-0000-4000-8000-00000000d0fa",
		"email_verified":    true,
		"status":            "active",
		"status_message":    "",
		"team":              map[string]string{"uuid": "5a1b3c2d-0000-4000-8000-0000000000aa", "name": "My Team"},
	}})
}
