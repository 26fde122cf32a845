package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// tlsRows measures what mutual TLS costs an agent's registration, as an
// agent registers: a new connection (TCP, then a TLS 1.3 handshake that
// checks the coordinator against the token's CA fingerprint) and one
// Register, against the same Register on a connection already open; and
// the handshake alone against a plain TCP connect. The nodes registered
// have no session, so nothing is scheduled on them.
func (b *bench) tlsRows(n int) ([]row, error) {
	ctx := context.Background()
	cfg, err := client.ConfigFromFile(b.configPath())
	if err != nil {
		return nil, err
	}
	cfg.Address = b.addr
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.CreateToken(ctx, client.TokenOptions{Uses: -1, TTL: 10 * time.Minute, Label: "bench tls"})
	if err != nil {
		return nil, err
	}
	tok, err := pki.ParseToken(resp.GetToken())
	if err != nil {
		return nil, err
	}
	pinned, err := pki.PinnedTLS(tok.CAFingerprint, nil)
	if err != nil {
		return nil, err
	}
	csrs := make([][]byte, 2*n+2)
	for i := range csrs {
		key, err := pki.NewKey()
		if err != nil {
			return nil, err
		}
		if csrs[i], err = pki.NewCSR(key); err != nil {
			return nil, err
		}
	}
	register := func(cc *grpc.ClientConn, csr []byte) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := cloudmlv1.NewAgentServiceClient(cc).Register(ctx, &cloudmlv1.RegisterRequest{
			JoinToken: resp.GetToken(), Csr: csr, Hostname: "bench-tls", Slots: 1, Runtime: "process"})
		return err
	}
	dial := func() (*grpc.ClientConn, error) {
		return grpc.NewClient(b.addr, append(grpcopt.Dial(), grpc.WithTransportCredentials(credentials.NewTLS(pinned.Clone())))...)
	}

	var fresh, reused, handshake, plain []time.Duration
	open, err := dial()
	if err != nil {
		return nil, err
	}
	defer open.Close()
	if err := register(open, csrs[0]); err != nil { // connects, and warms the coordinator up
		return nil, err
	}
	for i := range n {
		start := time.Now()
		cc, err := dial()
		if err != nil {
			return nil, err
		}
		err = register(cc, csrs[2*i+1])
		fresh = append(fresh, time.Since(start))
		cc.Close()
		if err != nil {
			return nil, err
		}
		start = time.Now()
		if err := register(open, csrs[2*i+2]); err != nil {
			return nil, err
		}
		reused = append(reused, time.Since(start))

		start = time.Now()
		conn, err := tls.Dial("tcp", b.addr, pinned.Clone())
		if err != nil {
			return nil, err
		}
		handshake = append(handshake, time.Since(start))
		conn.Close()
		start = time.Now()
		raw, err := net.Dial("tcp", b.addr)
		if err != nil {
			return nil, err
		}
		plain = append(plain, time.Since(start))
		raw.Close()
	}
	f, r, h, p := median(fresh), median(reused), median(handshake), median(plain)
	return []row{
		{"T1 registration: new TLS connection vs reused", ms(f), ms(r), fmt.Sprintf("%.2f", f.Seconds()/r.Seconds()),
			fmt.Sprintf("report (TLS costs %s per registration)", ms(f-r))},
		{"T2 TCP+TLS 1.3 handshake vs TCP connect", ms(h), ms(p), fmt.Sprintf("%.1f", h.Seconds()/p.Seconds()), "report"},
	}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// configPath is the admin credential file the coordinator wrote.
func (b *bench) configPath() string { return strings.TrimPrefix(b.config, pki.ConfigEnv+"=") }
