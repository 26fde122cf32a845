package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// runDownloads runs a coordinator (New + Run, provider none) on loopback
// ports with the agent download serving agentBin, advertised as
// coord.example.test, and returns it once the download answers.
func runDownloads(t *testing.T, agentBin string) (*Coordinator, AgentDownload) {
	t.Helper()
	return runDownloadsWith(t, agentBin, nil)
}

// runDownloadsWith is runDownloads with provider p (nil: none).
func runDownloadsWith(t *testing.T, agentBin string, p provider.Provider) (*Coordinator, AgentDownload) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Provider = p
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.AdvertiseAddr = "coord.example.test:7443"
	cfg.StateDir = t.TempDir()
	cfg.AdminConfig = filepath.Join(cfg.StateDir, "admin.config")
	cfg.Logger = testutil.Logger(t)
	cfg.Download = DownloadConfig{Listen: "127.0.0.1:0", AgentBinary: agentBin}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
		if _, err := c.AgentDownload(); err != ErrNoDownload {
			t.Errorf("AgentDownload after Run = %v, want ErrNoDownload", err)
		}
		c.Close()
	})
	var dl AgentDownload
	waitFor(t, "the agent download", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		dl, err = c.AgentDownload()
		return err == nil
	})
	return c, dl
}

// curl fetches rawURL with the real curl, trusting the CA in caFile and
// resolving the URL's host to loopback, and returns its output file.
func curl(t *testing.T, caFile, rawURL string, extra ...string) (string, []byte, error) {
	t.Helper()
	bin := testutil.NeedBinary(t, "curl")
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	args := append([]string{"--fail", "--silent", "--show-error", "--noproxy", "*", "--cacert", caFile,
		"--resolve", u.Hostname() + ":" + u.Port() + ":127.0.0.1", "-o", out}, extra...)
	msg, err := exec.Command(bin, append(args, rawURL)...).CombinedOutput()
	return out, msg, err
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentDownloadWithCurl: curl --cacert with the coordinator's CA
// fetches the agent binary from the advertised name, and what it gets has
// the SHA-256 the coordinator announces; with another CA, curl refuses
// the server.
func TestAgentDownloadWithCurl(t *testing.T) {
	agentBin, err := os.Executable() // a Linux executable of this machine's arch
	if err != nil {
		t.Fatal(err)
	}
	c, dl := runDownloads(t, agentBin)
	want := sha256File(t, agentBin)
	if dl.SHA256 != want || !strings.HasPrefix(dl.URL, "https://coord.example.test:") ||
		!strings.HasSuffix(dl.URL, "/v1/agent/linux-"+dl.Arch) || dl.Arch == "" {
		t.Fatalf("AgentDownload = %+v, want the binary's sha256 %s at the advertised host", dl, want)
	}
	caFile := writeFile(t, c.CACertPEM())

	out, msg, err := curl(t, caFile, dl.URL)
	if err != nil {
		t.Fatalf("curl %s: %v: %s", dl.URL, err, msg)
	}
	if got := sha256File(t, out); got != dl.SHA256 {
		t.Errorf("downloaded sha256 = %s, want %s", got, dl.SHA256)
	}

	// As the user-data fetches it: zstd on the wire, the binary on disk
	// (once the background compression is done; identity before).
	c.addrMu.Lock()
	d := c.downloads
	c.addrMu.Unlock()
	<-d.agent.zstDone
	out, msg, err = curl(t, caFile, dl.URL, "--compressed", "--write-out", "%{size_download} %header{content-encoding}", "--stderr", "-")
	if err != nil {
		t.Fatalf("curl --compressed %s: %v: %s", dl.URL, err, msg)
	}
	if got := sha256File(t, out); got != dl.SHA256 {
		t.Errorf("downloaded with --compressed: sha256 = %s, want %s", got, dl.SHA256)
	}
	st, _ := os.Stat(agentBin)
	var wire int64
	var encoding string
	if _, err := fmt.Sscan(string(msg), &wire, &encoding); err != nil || encoding != "zstd" || wire <= 0 || wire >= st.Size() {
		t.Errorf("curl --compressed: %q: want zstd and fewer bytes on the wire than the binary's %d", msg, st.Size())
	}
	// A resumed download's range is of the binary itself.
	out, msg, err = curl(t, caFile, dl.URL, "--compressed", "--range", "100-")
	if err != nil {
		t.Fatalf("curl --range: %v: %s", err, msg)
	}
	whole, _ := os.ReadFile(agentBin)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, whole[100:]) {
		t.Errorf("curl --range 100-: got %d bytes, want the binary's from byte 100 (%d)", len(got), len(whole)-100)
	}

	base := strings.TrimSuffix(dl.URL, "/v1/agent/linux-"+dl.Arch)
	out, msg, err = curl(t, caFile, base+CAPath)
	if err != nil {
		t.Fatalf("curl the CA: %v: %s", err, msg)
	}
	if got, _ := os.ReadFile(out); string(got) != string(c.CACertPEM()) {
		t.Errorf("%s = %q, want the CA certificate", CAPath, got)
	}

	other, _, err := pki.LoadOrCreateCA(t.TempDir(), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, msg, err := curl(t, writeFile(t, other.CertPEM), dl.URL); err == nil {
		t.Errorf("curl with another CA succeeded, want a certificate error")
	} else if !strings.Contains(string(msg), "certificate") {
		t.Errorf("curl with another CA: %v: %s, want a certificate error", err, msg)
	}

	for _, tc := range []struct {
		path  string
		extra []string
		code  string
	}{
		{"/v1/agent/linux-mips", nil, "404"},
		{"/v1/tokens", nil, "404"},
		{"/", nil, "404"},
		{CAPath, []string{"-X", "POST"}, "405"},
	} {
		_, msg, err := curl(t, caFile, base+tc.path, tc.extra...)
		if err == nil || !strings.Contains(string(msg), tc.code) {
			t.Errorf("curl %v %s: %v %s, want HTTP %s", tc.extra, tc.path, err, msg, tc.code)
		}
	}
}

// TestAgentDownloadRefusesAChangedBinary: a binary rewritten after the
// coordinator hashed it is not served (droplets would refuse it anyway).
func TestAgentDownloadRefusesAChangedBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "cloudml-agent")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c, dl := runDownloads(t, bin)
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	_, msg, err := curl(t, writeFile(t, c.CACertPEM()), dl.URL)
	if err == nil || !strings.Contains(string(msg), "503") {
		t.Errorf("curl of a changed binary: %v %s, want 503", err, msg)
	}
}

func TestAgentDownloadNeedsALinuxExecutable(t *testing.T) {
	script := filepath.Join(t.TempDir(), "cloudml-agent")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		script:                                "not a Linux executable",
		filepath.Join(t.TempDir(), "missing"): "no such file",
	} {
		cfg := DefaultConfig()
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.StateDir = t.TempDir()
		cfg.Download = DownloadConfig{Listen: "127.0.0.1:0", AgentBinary: path}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Run(context.Background())
		c.Close()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run serving %s = %v, want an error saying %q", path, err, want)
		}
	}
}

// TestProviderTargetNamesTheAgentDownload: the provider is started with
// the download's URL and SHA-256, which a cloud provider's user-data needs.
func TestProviderTargetNamesTheAgentDownload(t *testing.T) {
	agentBin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fake := providertest.NewFake("fake")
	_, dl := runDownloadsWith(t, agentBin, fake)
	var tg provider.Target
	waitFor(t, "the provider to start", func() bool {
		tg = fake.Target()
		return tg.MintToken != nil
	})
	if tg.AgentURL != dl.URL || tg.AgentSHA256 != dl.SHA256 {
		t.Errorf("provider started with agent %q (%s), want %q (%s)", tg.AgentURL, tg.AgentSHA256, dl.URL, dl.SHA256)
	}
}

func TestNoDownloadUnlessConfigured(t *testing.T) {
	h := start(t, "")
	if _, err := h.c.AgentDownload(); err != ErrNoDownload {
		t.Errorf("AgentDownload without Download.Listen = %v, want ErrNoDownload", err)
	}
}

func TestDefaultDownloadListen(t *testing.T) {
	for in, want := range map[string]string{
		":7443":           ":7444",
		"0.0.0.0:7070":    "0.0.0.0:7071",
		"[::1]:7443":      "[::1]:7444",
		"127.0.0.1:0":     "",
		"host:https":      "",
		"no-port":         "",
		"127.0.0.1:65535": "",
	} {
		if got := DefaultDownloadListen(in); got != want {
			t.Errorf("DefaultDownloadListen(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAcceptsZstd(t *testing.T) {
	for header, want := range map[string]bool{
		"":                             false,
		"gzip":                         false,
		"deflate, gzip, br, zstd":      true,
		"ZSTD":                         true,
		"zstd;q=0":                     false,
		"zstd; q=0.5, gzip":            true,
		"gzip, zstd;q=0.0":             false,
		"zstdx":                        false,
		"identity, zstd;q=bogus, gzip": false,
	} {
		if got := acceptsZstd(header); got != want {
			t.Errorf("acceptsZstd(%q) = %v, want %v", header, got, want)
		}
	}
}
