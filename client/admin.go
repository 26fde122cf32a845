package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Admin calls: join tokens, client credentials, node removal. They need an
// admin credential; a client one gets PermissionDenied.

// TokenOptions say what a new join token allows.
type TokenOptions struct {
	// TTL is how long it works; 0 means the coordinator's 15 minutes.
	TTL time.Duration
	// Uses is how many nodes may register with it; 0 means 1, -1 any
	// number until it expires.
	Uses int32
	// Label is a note for listings.
	Label string
	// MaxSlots and MaxMemoryBytes cap what a node registered with it may
	// claim; 0 means the coordinator's defaults.
	MaxSlots       int32
	MaxMemoryBytes int64
}

// CreateToken makes a join token. The token is in the response only.
func (c *Client) CreateToken(ctx context.Context, o TokenOptions) (*cloudmlv1.CreateJoinTokenResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	req := &cloudmlv1.CreateJoinTokenRequest{Uses: o.Uses, Label: o.Label, MaxSlots: o.MaxSlots, MaxMemoryBytes: o.MaxMemoryBytes}
	if o.TTL > 0 {
		req.Ttl = durationpb.New(o.TTL)
	}
	resp, err := c.cluster.CreateJoinToken(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create join token: %w", err)
	}
	return resp, nil
}

// Tokens lists join tokens, newest first, without their secrets.
func (c *Client) Tokens(ctx context.Context) ([]*cloudmlv1.JoinTokenInfo, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.ListJoinTokens(ctx, &cloudmlv1.ListJoinTokensRequest{})
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	return resp.GetTokens(), nil
}

// RevokeToken makes a join token unusable.
func (c *Client) RevokeToken(ctx context.Context, id string) (*cloudmlv1.RevokeJoinTokenResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.RevokeJoinToken(ctx, &cloudmlv1.RevokeJoinTokenRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("revoke join token %s: %w", id, err)
	}
	return resp, nil
}

// CredentialOptions say what a new client credential is.
type CredentialOptions struct {
	// Admin makes an admin credential.
	Admin bool
	// TTL is its lifetime; 0 means the coordinator's 365 days.
	TTL time.Duration
	// Coordinator is the address written into the credential; empty means
	// the address this client dials.
	Coordinator string
}

// CreateCredential issues a credential for name: it makes the key here,
// sends only a certificate request, and returns the complete credential
// (key included) for the caller to hand over. Nothing of the key reaches
// the coordinator.
func (c *Client) CreateCredential(ctx context.Context, name string, o CredentialOptions) (*pki.Credential, *cloudmlv1.CredentialInfo, error) {
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		return nil, nil, err
	}
	req := &cloudmlv1.CreateCredentialRequest{Name: name, Admin: o.Admin, Csr: csr}
	if o.TTL > 0 {
		req.Ttl = durationpb.New(o.TTL)
	}
	cctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.CreateCredential(cctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("create credential %s: %w", name, err)
	}
	addr := o.Coordinator
	if addr == "" {
		addr = c.cfg.Address
	}
	cred := &pki.Credential{Coordinator: addr, Name: name, Role: pki.Role(resp.GetInfo().GetRole()),
		CA: string(resp.GetCaCertificate()), Cert: string(resp.GetCertificate()), Key: string(keyPEM)}
	return cred, resp.GetInfo(), nil
}

// Credentials lists the client credentials the coordinator issued.
func (c *Client) Credentials(ctx context.Context) ([]*cloudmlv1.CredentialInfo, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.ListCredentials(ctx, &cloudmlv1.ListCredentialsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return resp.GetCredentials(), nil
}

// RevokeCredential refuses a credential on every call from now on.
func (c *Client) RevokeCredential(ctx context.Context, name string) (*cloudmlv1.RevokeCredentialResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.RevokeCredential(ctx, &cloudmlv1.RevokeCredentialRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("revoke credential %s: %w", name, err)
	}
	return resp, nil
}

// RemoveNode removes a node: its certificates are refused, its session
// ends, its attempts are rescheduled, and it stays out.
func (c *Client) RemoveNode(ctx context.Context, id string) (*cloudmlv1.RemoveNodeResponse, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.cluster.RemoveNode(ctx, &cloudmlv1.RemoveNodeRequest{NodeId: id})
	if err != nil {
		return nil, fmt.Errorf("remove node %s: %w", id, err)
	}
	return resp, nil
}
