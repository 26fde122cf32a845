package dropletmeta

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve answers GET /metadata/v1/<path> from values; a missing path is 404.
func serve(t *testing.T, values map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := values[strings.TrimPrefix(r.URL.Path, "/metadata/v1/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if v == "<500>" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		w.Write([]byte(v))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata/v1"
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		values  map[string]string
		want    Droplet
		addr    string
		wantErr string
	}{
		{
			name: "every value",
			values: map[string]string{"id": "3164494\n", "hostname": "ml-pool-1\n",
				"interfaces/private/0/ipv4/address": "10.116.0.2", "interfaces/public/0/ipv4/address": "203.0.113.7"},
			want: Droplet{ID: "3164494", Hostname: "ml-pool-1", PrivateIPv4: "10.116.0.2", PublicIPv4: "203.0.113.7"},
			addr: "10.116.0.2",
		},
		{
			name:   "no private interface",
			values: map[string]string{"id": "42", "interfaces/public/0/ipv4/address": "203.0.113.7"},
			want:   Droplet{ID: "42", PublicIPv4: "203.0.113.7"},
			addr:   "203.0.113.7",
		},
		{name: "no id", values: map[string]string{"hostname": "x"}, wantErr: "not in the droplet metadata"},
		{name: "id not a number", values: map[string]string{"id": "<html>"}, wantErr: "is not a droplet id"},
		{name: "address not an address", values: map[string]string{"id": "1", "interfaces/private/0/ipv4/address": "x"}, wantErr: "not an IPv4 address"},
		{name: "server error", values: map[string]string{"id": "1", "hostname": "<500>"}, wantErr: "500"},
		{name: "oversized", values: map[string]string{"id": strings.Repeat("1", maxBody+1)}, wantErr: "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{BaseURL: serve(t, tc.values)}
			got, err := c.Lookup(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Lookup = %+v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Lookup (-want +got):\n%s", diff)
			}
			if got.Address() != tc.addr {
				t.Errorf("Address = %q, want %q", got.Address(), tc.addr)
			}
		})
	}
}

func TestLookupUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := (&Client{BaseURL: url}).Lookup(context.Background())
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup against a closed port = %v, want a connection error", err)
	}
}
