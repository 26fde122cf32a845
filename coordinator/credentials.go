package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Client credentials: certificates for people and scripts. The key is made
// where the credential is used (cloudml-client makes it and sends a CSR);
// the coordinator keeps the name, role and serial, so revoking a name
// refuses its certificate on every call.

const (
	// defaultCredentialTTL is a client credential's lifetime.
	defaultCredentialTTL = 365 * 24 * time.Hour
	// adminCredentialName names the admin credential the coordinator writes.
	adminCredentialName = "admin"
	// adminRenewBefore: the admin credential file is issued again at start
	// when its certificate has less than this left.
	adminRenewBefore = 30 * 24 * time.Hour
)

var credentialName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// issueCredential signs csr as credential name with role and records it.
// A name whose credential is valid (not revoked, not expired) is taken,
// unless replace is set.
func (c *Coordinator) issueCredential(name string, role pki.Role, csr []byte, ttl time.Duration, creator string, replace bool) (*pki.Issued, *store.Credential, error) {
	if !credentialName.MatchString(name) {
		return nil, nil, errorf(ErrInvalid, "credential name %q: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	if ttl <= 0 || ttl > 10*defaultCredentialTTL {
		return nil, nil, errorf(ErrInvalid, "credential lifetime %s must be positive and at most %s", ttl, 10*defaultCredentialTTL)
	}
	if _, err := pki.ParseCSR(csr); err != nil {
		return nil, nil, errorf(ErrInvalid, "%v", err)
	}
	au := c.trust
	au.registerMu.Lock()
	defer au.registerMu.Unlock()
	now := time.Now()
	au.mu.RLock()
	old := au.creds[name]
	au.mu.RUnlock()
	if old != nil && !replace && !old.Revoked && now.Before(old.ExpireTime) {
		return nil, nil, errorf(ErrAlreadyExists, "credential %q exists; revoke it first ('cloudml-client credential revoke %s') or pick another name", name, name)
	}
	issued, err := au.ca.SignCSR(csr, role, name, ttl)
	if err != nil {
		return nil, nil, errorf(ErrInvalid, "%v", err)
	}
	rec := &store.Credential{Name: name, Role: string(role), Serial: issued.Serial, CreatedBy: creator,
		CreateTime: now, ExpireTime: issued.Cert.NotAfter}
	if err := c.store.Save(&store.Changes{Credentials: []*store.Credential{rec}}); err != nil {
		return nil, nil, err
	}
	au.mu.Lock()
	au.creds[name] = rec
	au.mu.Unlock()
	c.log.Info("credential issued", "name", name, "role", role, "expires", rec.ExpireTime, "by", orNone(creator))
	return issued, rec, nil
}

// ensureAdminConfig writes an admin credential file at cfg.AdminConfig
// unless one for this CA and address is there and valid for a while.
func (c *Coordinator) ensureAdminConfig(addr string) error {
	path := c.cfg.AdminConfig
	if path == "" {
		return nil
	}
	if cur, err := pki.LoadCredential(path); err == nil {
		fp, _ := cur.CAFingerprint()
		exp, _ := cur.Expiry()
		c.trust.mu.RLock()
		rec := c.trust.creds[cur.Name]
		c.trust.mu.RUnlock()
		if fp == c.trust.ca.Fingerprint() && cur.Coordinator == addr && time.Until(exp) > adminRenewBefore && rec != nil && !rec.Revoked {
			return nil
		}
		if fp != c.trust.ca.Fingerprint() {
			c.log.Warn("replacing a credential file made for another coordinator", "path", path)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("replacing an unreadable credential file", "path", path, "error", err)
	}
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		return err
	}
	issued, _, err := c.issueCredential(adminCredentialName, pki.RoleAdmin, csr, defaultCredentialTTL, "", true)
	if err != nil {
		return fmt.Errorf("issue the admin credential: %w", err)
	}
	cred := &pki.Credential{Coordinator: addr, Name: adminCredentialName, Role: pki.RoleAdmin,
		CA: string(c.trust.caPEM()), Cert: string(issued.CertPEM), Key: string(keyPEM)}
	if err := cred.Save(path); err != nil {
		return fmt.Errorf("write the admin credential %s: %w", path, err)
	}
	c.log.Info("wrote the admin credential", "path", path, "coordinator", addr)
	return nil
}

func credentialState(r *store.Credential, now time.Time) string {
	switch {
	case r.Revoked:
		return "revoked"
	case !now.Before(r.ExpireTime):
		return "expired"
	}
	return "valid"
}

func credentialInfo(r *store.Credential, now time.Time) *cloudmlv1.CredentialInfo {
	return &cloudmlv1.CredentialInfo{Name: r.Name, Role: r.Role, CreateTime: timestamppb.New(r.CreateTime),
		ExpireTime: timestamppb.New(r.ExpireTime), State: credentialState(r, now), CreatedBy: r.CreatedBy, Serial: r.Serial}
}

// CreateCredential issues a client or admin credential.
func (s *clusterServer) CreateCredential(ctx context.Context, req *cloudmlv1.CreateCredentialRequest) (*cloudmlv1.CreateCredentialResponse, error) {
	role := pki.RoleClient
	if req.GetAdmin() {
		role = pki.RoleAdmin
	}
	ttl := defaultCredentialTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	issued, rec, err := s.c.issueCredential(req.GetName(), role, req.GetCsr(), ttl, callerFrom(ctx).Name, false)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.CreateCredentialResponse{Certificate: issued.CertPEM, CaCertificate: s.c.trust.caPEM(), Info: credentialInfo(rec, time.Now())}, nil
}

// ListCredentials lists credentials by name.
func (s *clusterServer) ListCredentials(ctx context.Context, _ *cloudmlv1.ListCredentialsRequest) (*cloudmlv1.ListCredentialsResponse, error) {
	au := s.c.trust
	now := time.Now()
	resp := &cloudmlv1.ListCredentialsResponse{}
	au.mu.RLock()
	for _, r := range au.creds {
		resp.Credentials = append(resp.Credentials, credentialInfo(r, now))
	}
	au.mu.RUnlock()
	slices.SortFunc(resp.Credentials, func(a, b *cloudmlv1.CredentialInfo) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return resp, nil
}

// RevokeCredential refuses a credential from now on.
func (s *clusterServer) RevokeCredential(ctx context.Context, req *cloudmlv1.RevokeCredentialRequest) (*cloudmlv1.RevokeCredentialResponse, error) {
	c := s.c
	au := c.trust
	au.registerMu.Lock()
	defer au.registerMu.Unlock()
	au.mu.RLock()
	rec := au.creds[req.GetName()]
	au.mu.RUnlock()
	if rec == nil {
		return nil, toStatus(errorf(ErrNotFound, "credential %q not found (see 'cloudml-client credential ls')", req.GetName()))
	}
	next := *rec
	next.Revoked = true
	if err := c.store.Save(&store.Changes{Credentials: []*store.Credential{&next}}); err != nil {
		return nil, toStatus(err)
	}
	au.mu.Lock()
	au.creds[next.Name] = &next
	au.mu.Unlock()
	c.log.Info("credential revoked", "name", next.Name, "by", callerFrom(ctx).Name)
	return &cloudmlv1.RevokeCredentialResponse{Info: credentialInfo(&next, time.Now())}, nil
}
