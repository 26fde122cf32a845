package dofake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

type apiTaggedCount struct {
	Count         int    `json:"count"`
	LastTaggedURI string `json:"last_tagged_uri,omitempty"`
}

type apiTag struct {
	Name      string `json:"name"`
	Resources struct {
		apiTaggedCount
		Droplets        apiTaggedCount `json:"droplets"`
		Images          apiTaggedCount `json:"images"`
		Volumes         apiTaggedCount `json:"volumes"`
		VolumeSnapshots apiTaggedCount `json:"volume_snapshots"`
		Databases       apiTaggedCount `json:"databases"`
	} `json:"resources"`
}

// tagJSON renders tag name with its droplet count; s.mu must be held.
func (s *Server) tagJSON(host, name string) apiTag {
	t := apiTag{Name: name}
	last := 0
	for _, d := range s.droplets {
		if slices.Contains(d.view.Tags, name) {
			t.Resources.Droplets.Count++
			last = max(last, d.view.ID)
		}
	}
	if last != 0 {
		t.Resources.Droplets.LastTaggedURI = fmt.Sprintf("http://%s/v2/droplets/%d", host, last)
	}
	t.Resources.apiTaggedCount = t.Resources.Droplets
	return t
}

func (s *Server) createTag(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
		return
	}
	if !tagRE.MatchString(req.Name) {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid tag name %q: tags may contain letters, numbers, colons, dashes and underscores", req.Name))
		return
	}
	s.mu.Lock()
	s.tags[req.Name] = true // an existing tag is answered like a new one (this server's choice)
	t := s.tagJSON(r.Host, req.Name)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"tag": t})
}

func (s *Server) getTag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	ok := s.tags[name]
	t := s.tagJSON(r.Host, name)
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tag": t})
}

func (s *Server) tagResources(w http.ResponseWriter, r *http.Request)   { s.retag(w, r, true) }
func (s *Server) untagResources(w http.ResponseWriter, r *http.Request) { s.retag(w, r, false) }

// retag adds (or removes) tag {name} to (from) the droplets of the body.
// Only droplets are supported; the whole request fails if one is unknown.
func (s *Server) retag(w http.ResponseWriter, r *http.Request, add bool) {
	name := r.PathValue("name")
	var req struct {
		Resources []struct {
			ID   string `json:"resource_id"`
			Type string `json:"resource_type"`
		} `json:"resources"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error())
		return
	}
	if len(req.Resources) == 0 {
		writeError(w, http.StatusUnprocessableEntity, "resources must not be empty")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tags[name] {
		writeError(w, http.StatusNotFound, "")
		return
	}
	var ds []*droplet
	for _, res := range req.Resources {
		if res.Type != "droplet" {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("resource type %q is not supported by this test server", res.Type))
			return
		}
		d := s.lookup(res.ID)
		if d == nil {
			writeError(w, http.StatusNotFound, "droplet "+strconv.Quote(res.ID)+" not found")
			return
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		has := slices.Contains(d.view.Tags, name)
		switch {
		case add && !has:
			d.view.Tags = append(d.view.Tags, name)
		case !add && has:
			d.view.Tags = slices.DeleteFunc(d.view.Tags, func(t string) bool { return t == name })
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
