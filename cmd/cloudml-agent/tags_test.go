package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
)

// TestTagsDropGRPCStorage: the build tags the Makefile gives every binary
// (TAGS) keep the gRPC transport of the storage client (xDS, RLS, Envoy's
// protos) out of the agent, the client and the coordinator, and each
// still builds with them. A storage release that renamed its opt-out tag
// fails here.
func TestTagsDropGRPCStorage(t *testing.T) {
	goBin := testutil.NeedBinary(t, "go")
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TAGS \?= (.+)$`).FindSubmatch(mk)
	if m == nil || !strings.Contains(string(m[1]), "disable_grpc_modules") {
		t.Fatalf("the Makefile gives no TAGS with disable_grpc_modules (%q)", m)
	}
	tags := strings.TrimSpace(string(m[1]))
	for _, dir := range []string{".", "../cloudml-client", "../coordinator"} {
		out, err := exec.Command(goBin, "list", "-tags", tags, "-deps", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -tags %s %s: %v\n%s", tags, dir, err, out)
		}
		for _, pkg := range strings.Fields(string(out)) {
			if strings.HasPrefix(pkg, "google.golang.org/grpc/xds") || strings.HasPrefix(pkg, "google.golang.org/grpc/balancer/rls") ||
				strings.HasPrefix(pkg, "github.com/envoyproxy/") {
				t.Errorf("%s built with -tags %s depends on %s", dir, tags, pkg)
			}
		}
		// make build built the same: the build cache answers.
		if out, err := exec.Command(goBin, "build", "-tags", tags, "-o", os.DevNull, dir).CombinedOutput(); err != nil {
			t.Errorf("go build -tags %s %s: %v\n%s", tags, dir, err, out)
		}
	}
}
