package dofake_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/dofake"
)

// get fetches url from local address from ("" for any) and returns the
// status and body.
func get(t *testing.T, from, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{}
	if from != "" {
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestMetadataByID(t *testing.T) {
	s := start(t, func(c *dofake.Config) {
		c.SSHKeys = []dofake.SSHKey{{ID: 7, Fingerprint: "aa:bb", Name: "ci", PublicKey: "ssh-ed25519 AAAA ci"}}
	})
	c := client(t, s, 0)
	req := createReq("ml-n0", "cloudml-cluster:ml", "cloudml-pool:default")
	req.UserData = "#cloud-config\n{}\n"
	req.SSHKeys = []godo.DropletCreateSSHKey{{ID: 7}}
	d, _, err := c.Droplets.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	d = waitActive(t, c, d.ID)
	pub, _ := d.PublicIPv4()
	priv, _ := d.PrivateIPv4()
	view, _ := s.Droplet(d.ID)
	base := view.MetadataURL + "/metadata/v1/"
	for path, want := range map[string]string{
		"id":                                strconv.Itoa(d.ID),
		"hostname":                          "ml-n0",
		"region":                            "fra1",
		"user-data":                         req.UserData,
		"public-keys":                       "ssh-ed25519 AAAA ci",
		"tags/":                             "cloudml-cluster:ml\ncloudml-pool:default",
		"tags":                              "cloudml-cluster:ml\ncloudml-pool:default", // after the 301
		"interfaces/":                       "public/\nprivate/",
		"interfaces/private/0/":             "mac\ntype\nipv4/",
		"interfaces/private/0/ipv4/address": priv,
		"interfaces/public/0/ipv4/address":  pub,
		"interfaces/private/0/ipv4/netmask": "255.255.240.0",
		"interfaces/private/0/type":         "private",
		"":                                  "id\nhostname\nuser-data\nvendor-data\npublic-keys\nregion\ninterfaces/\ndns/\nfloating_ip/\nreserved_ip/\ntags/\nfeatures/",
	} {
		if code, body := get(t, "", base+path); code != 200 || body != want {
			t.Errorf("%s: %d %q; want 200 %q", path, code, body, want)
		}
	}
	if code, body := get(t, "", view.MetadataURL+"/metadata/v1"); code != 200 || !strings.HasPrefix(body, "id\n") {
		t.Errorf("/metadata/v1 without its slash: %d %q; want the index after a 301", code, body)
	}
	if code, _ := get(t, "", base+"nope"); code != 404 {
		t.Errorf("unknown key: %d; want 404", code)
	}

	code, body := get(t, "", view.MetadataURL+"/metadata/v1.json")
	var all struct {
		DropletID  int      `json:"droplet_id"`
		Hostname   string   `json:"hostname"`
		UserData   string   `json:"user_data"`
		Region     string   `json:"region"`
		Tags       []string `json:"tags"`
		PublicKeys []string `json:"public_keys"`
		Interfaces map[string][]struct {
			IPv4 struct {
				IPAddress string `json:"ip_address"`
			} `json:"ipv4"`
			Type string `json:"type"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(body), &all); err != nil || code != 200 {
		t.Fatalf("v1.json: %d %v", code, err)
	}
	got := []string{strconv.Itoa(all.DropletID), all.Hostname, all.UserData, all.Region,
		all.Interfaces["private"][0].IPv4.IPAddress, all.Interfaces["public"][0].IPv4.IPAddress}
	want := []string{strconv.Itoa(d.ID), "ml-n0", req.UserData, "fra1", priv, pub}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("v1.json (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"cloudml-cluster:ml", "cloudml-pool:default"}, all.Tags); diff != "" {
		t.Errorf("v1.json tags (-want +got):\n%s", diff)
	}

	if code, _ := get(t, "", s.URL()+"droplet/1/metadata/v1/id"); code != 404 {
		t.Errorf("metadata of an unknown droplet: %d; want 404", code)
	}
	if _, err := c.Droplets.Delete(context.Background(), d.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, "", base+"id"); code != 404 {
		t.Errorf("metadata of a deleted droplet: %d; want 404", code)
	}
	if st := s.Stats(); st.Requests[dofake.EndpointMetadata] < 17 {
		t.Errorf("%d metadata requests counted", st.Requests[dofake.EndpointMetadata])
	}
}

// The metadata service at a fixed address answers each droplet by the
// address its request comes from, on the API listener and on the
// metadata-only one.
func TestMetadataBySource(t *testing.T) {
	addrs := map[string]dofake.Addresses{
		"a": {Private: netip.MustParseAddr("127.0.0.2")},
		"b": {Public: netip.MustParseAddr("127.0.0.3")},
	}
	booter := dofake.BootFuncs{BootFunc: func(_ context.Context, d dofake.Droplet, _ string) (dofake.Addresses, error) {
		return addrs[d.Name], nil
	}}
	s := start(t, func(c *dofake.Config) { c.Booter = booter; c.MetadataAddr = "127.0.0.1:0" })
	c := client(t, s, 0)
	ids := map[string]int{}
	for _, name := range []string{"a", "b"} {
		d, _, err := c.Droplets.Create(context.Background(), createReq(name))
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = waitActive(t, c, d.ID).ID
	}
	for _, base := range []string{s.URL(), s.MetadataURL() + "/"} {
		for from, want := range map[string]int{"127.0.0.2": ids["a"], "127.0.0.3": ids["b"]} {
			if code, body := get(t, from, base+"metadata/v1/id"); code != 200 || body != strconv.Itoa(want) {
				t.Errorf("%smetadata/v1/id from %s: %d %q; want %d", base, from, code, body, want)
			}
		}
		if code, _ := get(t, "127.0.0.1", base+"metadata/v1/id"); code != 404 {
			t.Errorf("%smetadata/v1/id from no droplet's address: %d; want 404", base, code)
		}
	}
	if code, _ := get(t, "", s.MetadataURL()+"/v2/account"); code != 404 {
		t.Errorf("the API on the metadata listener: %d; want 404", code)
	}
}
