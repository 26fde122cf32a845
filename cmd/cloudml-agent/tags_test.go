package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
)

// TestAgentTagsDropGRPCStorage: the build tags the Makefile gives the
// agent (AGENT_TAGS) keep the gRPC transport of the storage client (xDS,
// RLS, Envoy's protos) out of it, and the agent still builds with them.
// A storage release that renamed its opt-out tag fails here.
func TestAgentTagsDropGRPCStorage(t *testing.T) {
	goBin := testutil.NeedBinary(t, "go")
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^AGENT_TAGS \?= (.+)$`).FindSubmatch(mk)
	if m == nil || !strings.Contains(string(m[1]), "disable_grpc_modules") {
		t.Fatalf("the Makefile gives the agent no AGENT_TAGS with disable_grpc_modules (%q)", m)
	}
	tags := strings.TrimSpace(string(m[1]))
	out, err := exec.Command(goBin, "list", "-tags", tags, "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -tags %s: %v\n%s", tags, err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc/xds") || strings.HasPrefix(pkg, "google.golang.org/grpc/balancer/rls") ||
			strings.HasPrefix(pkg, "github.com/envoyproxy/") {
			t.Errorf("the agent built with -tags %s depends on %s", tags, pkg)
		}
	}
	// make build built the same: the build cache answers.
	if out, err := exec.Command(goBin, "build", "-tags", tags, "-o", os.DevNull, ".").CombinedOutput(); err != nil {
		t.Errorf("go build -tags %s: %v\n%s", tags, err, out)
	}
}
