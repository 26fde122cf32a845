package coordinator

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
)

// TestNeverImportsAgent keeps the roles apart: they meet only in the proto.
func TestNeverImportsAgent(t *testing.T) {
	goBin := testutil.NeedBinary(t, "go")
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
