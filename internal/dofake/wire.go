package dofake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// The JSON shapes of the DigitalOcean API v2 that godo decodes.

type apiRegion struct {
	Slug      string   `json:"slug"`
	Name      string   `json:"name"`
	Sizes     []string `json:"sizes"`
	Available bool     `json:"available"`
	Features  []string `json:"features"`
}

type apiImage struct {
	ID            int      `json:"id"`
	Name          string   `json:"name"`
	Distribution  string   `json:"distribution"`
	Slug          string   `json:"slug"`
	Public        bool     `json:"public"`
	Regions       []string `json:"regions"`
	CreatedAt     string   `json:"created_at"`
	MinDiskSize   int      `json:"min_disk_size"`
	Type          string   `json:"type"`
	SizeGigabytes float64  `json:"size_gigabytes"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Status        string   `json:"status"`
}

type apiNetworkV4 struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
	Type      string `json:"type"`
}

type apiNetworks struct {
	V4 []apiNetworkV4 `json:"v4"`
	V6 []struct{}     `json:"v6"`
}

type apiDroplet struct {
	ID               int         `json:"id"`
	Name             string      `json:"name"`
	Memory           int         `json:"memory"`
	Vcpus            int         `json:"vcpus"`
	Disk             int         `json:"disk"`
	Locked           bool        `json:"locked"`
	Status           string      `json:"status"`
	Kernel           *struct{}   `json:"kernel"`
	CreatedAt        string      `json:"created_at"`
	Features         []string    `json:"features"`
	BackupIDs        []int       `json:"backup_ids"`
	NextBackupWindow *struct{}   `json:"next_backup_window"`
	SnapshotIDs      []int       `json:"snapshot_ids"`
	Image            apiImage    `json:"image"`
	VolumeIDs        []string    `json:"volume_ids"`
	Size             Size        `json:"size"`
	SizeSlug         string      `json:"size_slug"`
	Networks         apiNetworks `json:"networks"`
	Region           apiRegion   `json:"region"`
	Tags             []string    `json:"tags"`
	VPCUUID          string      `json:"vpc_uuid"`
}

type apiLinkAction struct {
	ID   int    `json:"id"`
	Rel  string `json:"rel"`
	HREF string `json:"href"`
}

type apiPages struct {
	First string `json:"first,omitempty"`
	Prev  string `json:"prev,omitempty"`
	Next  string `json:"next,omitempty"`
	Last  string `json:"last,omitempty"`
}

type apiLinks struct {
	Pages   *apiPages       `json:"pages,omitempty"`
	Actions []apiLinkAction `json:"actions,omitempty"`
}

type apiMeta struct {
	Total int `json:"total"`
}

// apiError is the body of every error answer.
type apiError struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// Error ids the API uses, by status.
var errorIDs = map[int]string{
	http.StatusBadRequest:          "bad_request",
	http.StatusUnauthorized:        "Unauthorized",
	http.StatusForbidden:           "forbidden",
	http.StatusNotFound:            "not_found",
	http.StatusMethodNotAllowed:    "method_not_allowed",
	http.StatusUnprocessableEntity: "unprocessable_entity",
	http.StatusTooManyRequests:     "too_many_requests",
	http.StatusInternalServerError: "server_error",
	http.StatusBadGateway:          "bad_gateway",
	http.StatusServiceUnavailable:  "service_unavailable",
	http.StatusGatewayTimeout:      "gateway_timeout",
}

// Messages the API sends with those ids when nothing more precise applies.
var errorMessages = map[int]string{
	http.StatusUnauthorized:        "Unable to authenticate you",
	http.StatusNotFound:            "The resource you were accessing could not be found.",
	http.StatusTooManyRequests:     "API Rate limit exceeded.",
	http.StatusInternalServerError: "Server was unable to give you a response.",
	http.StatusServiceUnavailable:  "Service is temporarily unavailable.",
}

// writeError answers status with DO's error body; message "" picks the
// usual one.
func writeError(w http.ResponseWriter, status int, message string) {
	id := errorIDs[status]
	if id == "" {
		id = "error"
	}
	if message == "" {
		message = errorMessages[status]
	}
	if message == "" {
		message = http.StatusText(status)
	}
	writeJSON(w, status, apiError{ID: id, Message: message, RequestID: w.Header().Get("X-Request-Id")})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("dofake: marshal %T: %v", v, err)) // every value here is plain data
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

const (
	defaultPerPage = 20
	maxPerPage     = 200
)

// paginate cuts one page out of all as the API does: page (from 1) and
// per_page (default 20, at most 200) from the query; links.pages holds
// absolute URLs with the request's other parameters, meta.total the count.
// It answers 400 itself and returns false for a malformed page.
func paginate[T any](w http.ResponseWriter, r *http.Request, all []T) ([]T, apiLinks, apiMeta, bool) {
	q := r.URL.Query()
	num := func(key string, def int) (int, bool) {
		v := q.Get(key)
		if v == "" {
			return def, true
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s must be an integer", key))
			return 0, false
		}
		return n, true
	}
	page, ok1 := num("page", 1)
	per, ok2 := num("per_page", defaultPerPage)
	if !ok1 || !ok2 {
		return nil, apiLinks{}, apiMeta{}, false
	}
	page = max(page, 1)
	per = min(max(per, 1), maxPerPage)
	last := max((len(all)+per-1)/per, 1)
	lo := min((page-1)*per, len(all))
	hi := min(lo+per, len(all))
	link := func(p int) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		v := r.URL.Query()
		v.Set("page", strconv.Itoa(p))
		v.Set("per_page", strconv.Itoa(per))
		u.RawQuery = v.Encode()
		return u.String()
	}
	var pages apiPages
	if page > 1 {
		pages.First, pages.Prev = link(1), link(min(page-1, last))
	}
	if page < last {
		pages.Next, pages.Last = link(page+1), link(last)
	}
	links := apiLinks{}
	if pages != (apiPages{}) {
		links.Pages = &pages
	}
	return all[lo:hi], links, apiMeta{Total: len(all)}, true
}
