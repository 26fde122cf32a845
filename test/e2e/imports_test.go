package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentAndCoordinatorNeverImportEachOther keeps the two roles apart: they
// meet only in proto/cloudml/v1 and the shared internal packages.
func TestAgentAndCoordinatorNeverImportEachOther(t *testing.T) {
	const mod = "github.com/cloudml/cloudml/"
	cases := []struct{ pkgs, forbidden string }{
		{"./agent/...", mod + "coordinator"},
		{"./coordinator/...", mod + "agent"},
	}
	for _, c := range cases {
		cmd := exec.Command("go", "list", "-deps", c.pkgs)
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", c.pkgs, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 5 {
			t.Fatalf("go list -deps %s listed only %v", c.pkgs, deps)
		}
		for _, d := range deps {
			if d == c.forbidden || strings.HasPrefix(d, c.forbidden+"/") {
				t.Errorf("%s depends on %s", c.pkgs, d)
			}
		}
	}
}
