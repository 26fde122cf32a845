package attempt

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// secretOutside is a file outside the output dir, as the agent's secrets
// are, and an output dir whose task planted links to it.
func secretOutside(t *testing.T) (output, secret string) {
	t.Helper()
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "identity")
	output = filepath.Join(dir, "output")
	for _, d := range []string{secretDir, output, filepath.Join(output, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret = "SECRET-CREDENTIAL"
	key := filepath.Join(secretDir, "identity.json")
	if err := os.WriteFile(key, []byte(`{"node_credential": "`+secret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		MetricsFile:      key,
		"abs-link":       key,
		"rel-link":       "../identity/identity.json",
		"dir-link":       secretDir,
		"sub/inner-link": "../../identity/identity.json",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(output, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(output, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.bin", "sub/curve.csv", "logs/stdout.log"} {
		p := filepath.Join(output, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return output, secret
}

func TestReadMetricsStaysInOutputDir(t *testing.T) {
	output, secret := secretOutside(t)
	metrics, warn := readMetrics(output)
	if metrics != nil || strings.Contains(warn, secret) || warn == "" {
		t.Errorf("readMetrics through a symlink = %v, %q; want no metrics and a warning without the secret", metrics, warn)
	}
}

func TestListOutputsStaysInOutputDir(t *testing.T) {
	output, secret := secretOutside(t)
	root, err := openOutput(output)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	files, warnings, err := listOutputs(root)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"model.bin", "sub/curve.csv"}, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	joined := strings.Join(warnings, "\n")
	for _, name := range []string{"abs-link", "rel-link", "dir-link", "sub/inner-link", "fifo", MetricsFile, "logs/stdout.log"} {
		if !strings.Contains(joined, "output "+name+" ") {
			t.Errorf("no warning names %s; warnings:\n%s", name, joined)
		}
	}
	// Even if a name turned into a link after the listing, no open leaves
	// the directory or blocks on a FIFO.
	for _, rel := range []string{"abs-link", "rel-link", "dir-link/identity.json", "sub/inner-link", "fifo"} {
		f, err := openRegular(root, rel)
		if err == nil {
			data := make([]byte, 100)
			n, _ := f.Read(data)
			f.Close()
			t.Errorf("openRegular(%s) read %q, want an error", rel, data[:n])
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("openRegular(%s) error shows the secret: %v", rel, err)
		}
	}
}
