package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/zstd"
)

// The agent download endpoint. A droplet's cloud-init user-data fetches
// cloudml-agent from the coordinator that made it:
//
//	curl --fail --cacert /etc/cloudml/ca.crt https://<advertise host>:<port>/v1/agent/linux-amd64
//
// and checks its SHA-256, which the user-data also carries, before it
// installs it. The endpoint is HTTPS with the coordinator's own server
// certificate (the one gRPC serves, which names the listen and advertise
// hosts and "cloudml-coordinator"), so curl's --cacert with the CA from the
// user-data verifies it; it asks for no client certificate: the binary is
// public, and its hash, not the channel, is what makes it trustworthy.
// It serves exactly two things, the agent binary and the CA certificate
// (GET /v1/ca.crt); nothing secret is reachable there. A client that
// accepts zstd (the user-data's curl --compressed) gets the binary
// zstd-encoded, compressed once in the background as the endpoint starts
// (about 0.15 s; identity until then): about a third of the bytes
// (23 MB to 8), so a droplet far from the coordinator fetches it in a
// third of the time; the hash it checks is still the binary's.
//
// It has its own listener (Download.Listen) rather than sharing the gRPC
// port. Sharing would mean either grpc-go's ServeHTTP (a net/http HTTP/2
// server, measurably slower than grpc-go's own transport for every agent
// and client call) or splitting connections by TLS ALPN before gRPC sees
// them: terminating TLS outside grpc-go and handing it finished
// connections through hand-written transport credentials, in the path that
// authenticates every call; and curl offers "h2" too, so the split would
// have to rest on curl also offering "http/1.1". A second port is one more
// firewall rule for the coordinator's host, and keeps the gRPC path as it
// is. The listener is off unless configured: local and netns clusters do
// not need it; a cloud provider does (DefaultDownloadListen: the gRPC port
// plus one).

// DownloadConfig configures the agent download endpoint.
type DownloadConfig struct {
	// Listen is the HTTPS listen address, host:port; empty means no
	// endpoint.
	Listen string
	// AgentBinary is the cloudml-agent served (a Linux executable); empty
	// means cloudml-agent beside the coordinator's executable, else on
	// PATH. Its SHA-256 is computed once, at start.
	AgentBinary string
}

// DefaultDownloadListen is the download listen address that goes with the
// gRPC listen address listen: the same host, the next port ("" if listen
// has no numeric port, or port 0: then pick ":0" explicitly).
func DefaultDownloadListen(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// Paths served by the download endpoint.
const (
	// AgentPathPrefix is followed by "linux-<GOARCH>" of the binary.
	AgentPathPrefix = "/v1/agent/"
	// CAPath serves the CA certificate (PEM).
	CAPath = "/v1/ca.crt"
)

// maxDownloads bounds the downloads served at once; more are answered 503
// with Retry-After, which the user-data's curl retries.
const maxDownloads = 32

// AgentDownload is what user-data needs to fetch the agent from this
// coordinator.
type AgentDownload struct {
	// URL is https://<host>:<port>/v1/agent/linux-<arch>, host being the
	// advertise address's (else the listen address's) and port the
	// download listener's.
	URL string
	// SHA256 is the binary's SHA-256 in hex.
	SHA256 string
	// Size is its size in bytes.
	Size int64
	// Arch is its GOARCH ("amd64").
	Arch string
}

// ErrNoDownload: the coordinator serves no agent download (Download.Listen
// is empty).
var ErrNoDownload = errors.New("the coordinator serves no agent download (set --download-listen)")

// AgentDownload says where and what the agent binary is, once Run is
// serving.
func (c *Coordinator) AgentDownload() (AgentDownload, error) {
	c.addrMu.Lock()
	d := c.downloads
	c.addrMu.Unlock()
	if d == nil {
		return AgentDownload{}, ErrNoDownload
	}
	host := advertiseHost(c.cfg.AdvertiseAddr, c.Addr())
	_, port, _ := net.SplitHostPort(d.lis.Addr().String())
	return AgentDownload{
		URL:    "https://" + net.JoinHostPort(host, port) + AgentPathPrefix + "linux-" + d.agent.arch,
		SHA256: d.agent.sha256, Size: d.agent.size, Arch: d.agent.arch,
	}, nil
}

// advertiseHost is the host agents dial: the advertise address's, else the
// bound address's (a wildcard made loopback).
func advertiseHost(advertise, bound string) string {
	if h, _, err := net.SplitHostPort(advertise); err == nil && h != "" {
		return h
	}
	h, _, _ := net.SplitHostPort(dialAddr(bound))
	return h
}

// agentFile is the served binary, open since start so that what is served
// is what was hashed.
type agentFile struct {
	path    string
	f       *os.File
	sha256  string
	size    int64
	modTime time.Time
	arch    string
	// zst is the binary zstd-encoded, for clients that accept it, once
	// zstDone is closed (nil if compressing failed).
	zst     []byte
	zstDone chan struct{}
}

// compress fills zst and closes zstDone.
func (a *agentFile) compress(log hclog.Logger) {
	defer close(a.zstDone)
	start := time.Now()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err == nil {
		_, err = io.Copy(enc, io.NewSectionReader(a.f, 0, a.size))
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		log.Warn("cannot compress the agent binary; serving it as it is", "error", err)
		return
	}
	a.zst = buf.Bytes()
	log.Debug("agent binary compressed", "bytes", a.size, "zstd_bytes", len(a.zst), "took", time.Since(start).Round(time.Millisecond))
}

// zstd returns the binary zstd-encoded, or nil while it is being made.
func (a *agentFile) zstd() []byte {
	select {
	case <-a.zstDone:
		return a.zst
	default:
		return nil
	}
}

// openAgent opens and hashes the agent binary and reads its architecture.
func openAgent(path string) (*agentFile, error) {
	if path == "" {
		if exe, err := os.Executable(); err == nil {
			if beside := filepath.Join(filepath.Dir(exe), "cloudml-agent"); fileExists(beside) {
				path = beside
			}
		}
	}
	if path == "" || !strings.Contains(path, "/") {
		if path == "" {
			path = "cloudml-agent"
		}
		p, err := exec.LookPath(path)
		if err != nil {
			return nil, fmt.Errorf("agent download: no %s beside the coordinator or on PATH (%v); run `make build`, or pass its path (--agent-bin)", path, err)
		}
		path = p
	}
	arch, err := elfArch(path)
	if err != nil {
		return nil, fmt.Errorf("agent download: %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("agent download: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent download: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size())); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent download: hash %s: %w", path, err)
	}
	return &agentFile{path: path, f: f, sha256: hex.EncodeToString(h.Sum(nil)), size: st.Size(), modTime: st.ModTime(), arch: arch,
		zstDone: make(chan struct{})}, nil
}

// acceptsZstd reports whether an Accept-Encoding header accepts zstd
// (with a q-value above 0, if any).
func acceptsZstd(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "zstd") {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// elfArch is the GOARCH of a Linux executable.
func elfArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("not a Linux executable: %w", err)
	}
	defer f.Close()
	switch {
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return "", fmt.Errorf("not an executable (ELF type %s)", f.Type)
	case f.Machine == elf.EM_X86_64:
		return "amd64", nil
	case f.Machine == elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("an executable for %s, not amd64 or arm64", f.Machine)
}

// unchanged says whether the file on disk is still the one hashed; one
// rewritten in place would not match its hash, and droplets would refuse
// it.
func (a *agentFile) unchanged() bool {
	st, err := a.f.Stat()
	return err == nil && st.Size() == a.size && st.ModTime().Equal(a.modTime)
}

// downloadServer is the HTTPS endpoint.
type downloadServer struct {
	lis   net.Listener
	srv   *http.Server
	agent *agentFile
	caPEM []byte
	log   hclog.Logger
	slots chan struct{}
	// started is set by serveDownloads; done is closed when serving ends.
	started bool
	done    chan struct{}
}

// listenDownloads opens the agent binary and the download listener, or
// returns nil when Download.Listen is empty. Run serves it once the server
// certificate exists (serveDownloads) and stops it when it returns
// (closeDownloads).
func (c *Coordinator) listenDownloads() (*downloadServer, error) {
	cfg := c.cfg.Download
	if cfg.Listen == "" {
		return nil, nil
	}
	agent, err := openAgent(cfg.AgentBinary)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		agent.f.Close()
		return nil, fmt.Errorf("agent download: listen on %s: %w", cfg.Listen, err)
	}
	d := &downloadServer{
		lis: lis, agent: agent, caPEM: c.trust.caPEM(), log: c.log.Named("download"),
		slots: make(chan struct{}, maxDownloads), done: make(chan struct{}),
	}
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.trust.server.Load(), nil
		},
	}
	d.srv = &http.Server{
		Handler:           d,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          d.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	return d, nil
}

// addrs is the listener's address, for the server certificate's names.
func (d *downloadServer) addrs() []string {
	if d == nil {
		return nil
	}
	return []string{d.lis.Addr().String()}
}

// serveDownloads serves d in the background, once the server certificate
// exists, and makes AgentDownload answer.
func (c *Coordinator) serveDownloads(d *downloadServer) {
	if d == nil {
		return
	}
	c.addrMu.Lock()
	c.downloads = d
	c.addrMu.Unlock()
	d.started = true
	go d.agent.compress(d.log)
	d.log.Info("serving the agent download", "addr", d.lis.Addr().String(), "agent", d.agent.path,
		"arch", d.agent.arch, "sha256", d.agent.sha256, "bytes", d.agent.size)
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(tls.NewListener(d.lis, d.srv.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("agent download stopped", "error", err)
		}
	}()
}

// closeDownloads stops serving d (downloads in flight get stopTimeout to
// finish) and closes the binary.
func (c *Coordinator) closeDownloads(d *downloadServer) {
	if d == nil {
		return
	}
	c.addrMu.Lock()
	if c.downloads == d {
		c.downloads = nil
	}
	c.addrMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.srv.Close()
	}
	if d.started {
		<-d.done
		<-d.agent.zstDone
	} else {
		d.lis.Close()
	}
	d.agent.f.Close()
}

// ServeHTTP serves the agent binary and the CA certificate, nothing else.
func (d *downloadServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case CAPath:
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(d.caPEM)
	case AgentPathPrefix + "linux-" + d.agent.arch:
		d.serveAgent(w, r)
	default:
		http.Error(w, "not found: this endpoint serves "+AgentPathPrefix+"linux-"+d.agent.arch+" and "+CAPath, http.StatusNotFound)
	}
}

func (d *downloadServer) serveAgent(w http.ResponseWriter, r *http.Request) {
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many downloads at once; retry", http.StatusServiceUnavailable)
		return
	}
	if !d.agent.unchanged() {
		d.log.Error("the agent binary changed on disk since the coordinator hashed it; restart the coordinator", "path", d.agent.path)
		http.Error(w, "the agent binary changed on the coordinator since it started; restart the coordinator", http.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Cloudml-Sha256", d.agent.sha256)
	h.Set("Vary", "Accept-Encoding")
	// Ranges are of the binary itself: a resumed download gets identity.
	if zst := d.agent.zstd(); zst != nil && r.Header.Get("Range") == "" && acceptsZstd(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "zstd")
		h.Set("Content-Length", strconv.Itoa(len(zst)))
		h.Set("Last-Modified", d.agent.modTime.UTC().Format(http.TimeFormat))
		if r.Method == http.MethodGet {
			w.Write(zst)
		}
		d.log.Info("agent binary served", "remote", r.RemoteAddr, "encoding", "zstd", "bytes", len(zst), "took", time.Since(start).Round(time.Millisecond))
		return
	}
	http.ServeContent(w, r, "cloudml-agent", d.agent.modTime, io.NewSectionReader(d.agent.f, 0, d.agent.size))
	d.log.Info("agent binary served", "remote", r.RemoteAddr, "range", r.Header.Get("Range"), "took", time.Since(start).Round(time.Millisecond))
}
