package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// TestDemoCaptureHoldsNoSecrets runs `make demo` (scripts/demo.sh: a
// coordinator, two local agents and the linreg sweep) while tcpdump
// records every byte on its loopback port, then looks in the capture for
// anything secret: a join token, a run of 32 hex digits (a token's secret
// or fingerprint), a PEM header, and the DER of every key and certificate
// the run made (the CA's, the server's, the admin credential's, each
// node's). TLS 1.3 encrypts certificates too, so none may appear.
func TestDemoCaptureHoldsNoSecrets(t *testing.T) {
	testutil.Short(t)
	tcpdump := testutil.NeedBinary(t, "tcpdump")
	testutil.NeedBinary(t, "octave-cli")
	if os.Geteuid() != 0 {
		testutil.NeedSystem(t, "root (for tcpdump)", os.ErrPermission)
	}
	home := t.TempDir()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	pcap := filepath.Join(t.TempDir(), "demo.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dump := exec.CommandContext(ctx, tcpdump, "-i", "lo", "-U", "-s", "0", "-w", pcap, "tcp port "+port)
	stderr, err := dump.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(listening)
			}
		}
		if !once {
			close(listening)
		}
	}()
	<-listening

	demo := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(), "scripts", "demo.sh"))
	demo.Env = append(os.Environ(), "CLOUDML_DEMO_HOME="+home, "CLOUDML_DEMO_PORT="+port)
	out, err := demo.CombinedOutput()
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	data, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	// The capture must hold the run: a TLS handshake for each of the
	// demo's connections (two agents, then each client command) and the
	// traffic of the sweep. Its size varies with timing, so it is only
	// checked against a floor far below any real run's.
	hellos := clientHellos(data)
	if hellos < 4 || len(data) < 32<<10 {
		t.Fatalf("the capture has %d bytes and %d TLS ClientHellos (want at least 4): it did not record the demo", len(data), hellos)
	}
	t.Logf("capture of the demo: %d bytes and %d TLS ClientHellos on port %s", len(data), hellos, port)

	if bytes.Contains(data, []byte("CMLTKN")) {
		t.Errorf("the capture contains a join token")
	}
	if m := regexp.MustCompile(`[0-9a-f]{32}`).Find(data); m != nil {
		t.Errorf("the capture contains %q, a token secret or fingerprint in clear", m)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.Contains(data, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("the capture contains PEM key or certificate text")
	}
	secrets := demoSecrets(t, home)
	if len(secrets) < 8 { // CA, server and admin keys and certificates, and two nodes'
		t.Fatalf("found %d keys and certificates in %s, want at least 8", len(secrets), home)
	}
	for name, der := range secrets {
		if bytes.Contains(data, der) {
			t.Errorf("the capture contains the bytes of %s", name)
		}
	}
}

// clientHellos counts the TLS records in data that open a handshake with a
// ClientHello: content type 22, legacy version 3.1, a two-byte length, then
// handshake type 1.
func clientHellos(data []byte) int {
	n := 0
	for i := 0; i+5 < len(data); i++ {
		if data[i] == 0x16 && data[i+1] == 0x03 && data[i+2] == 0x01 && data[i+5] == 0x01 {
			n++
		}
	}
	return n
}

// demoSecrets reads the DER of every key and certificate under home.
func demoSecrets(t *testing.T, home string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(home, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(path, "bucket") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		head := make([]byte, 64<<10)
		n, _ := io.ReadFull(f, head)
		rest := head[:n]
		if cred, err := pki.LoadCredential(path); err == nil { // YAML indents its PEM
			rest = []byte(cred.Cert + cred.Key + cred.CA)
		}
		for i := 0; ; i++ {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				if _, err := x509.ParseCertificate(b.Bytes); err != nil {
					continue
				}
			}
			out[path+"#"+b.Type+"#"+string(rune('0'+i))] = b.Bytes
		}
		return nil
	})
	return out
}
