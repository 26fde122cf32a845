package coordinator

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNeverImportsAgent keeps the roles apart: they meet only in the proto.
func TestNeverImportsAgent(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/cloudml/cloudml/agent" || strings.HasPrefix(pkg, "github.com/cloudml/cloudml/agent/") {
			t.Errorf("coordinator depends on %s", pkg)
		}
	}
}
