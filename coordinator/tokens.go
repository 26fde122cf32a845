package coordinator

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Join tokens. Stricter than Swarm's by default: a token is valid for 15
// minutes and one registration unless its creator asks for more, never for
// more than maxTokenTTL, and it is stored as a hash. The local and netns
// providers mint one per agent start.

const (
	defaultTokenTTL = 15 * time.Minute
	maxTokenTTL     = 30 * 24 * time.Hour
	// tokenKeep is how long an expired or used-up token stays listed
	// before the coordinator forgets it.
	tokenKeep = 24 * time.Hour
)

// tokenRequest is what a new token allows.
type tokenRequest struct {
	ttl            time.Duration
	uses           int32 // 0: any number until it expires
	label, creator string
	maxSlots       int32
	maxMemory      int64
}

// createToken makes and stores a join token and returns it.
func (c *Coordinator) createToken(req tokenRequest) (pki.Token, *store.JoinToken, error) {
	if req.ttl <= 0 || req.ttl > maxTokenTTL {
		return pki.Token{}, nil, errorf(ErrInvalid, "token lifetime %s must be between 0 and %s", req.ttl, maxTokenTTL)
	}
	if req.uses < 0 || req.maxSlots < 0 || req.maxMemory < 0 {
		return pki.Token{}, nil, errorf(ErrInvalid, "token uses and caps must not be negative")
	}
	if len(req.label) > 200 {
		return pki.Token{}, nil, errorf(ErrInvalid, "token label is %d bytes, over the limit of 200", len(req.label))
	}
	au := c.trust
	tok := pki.NewToken(au.ca.Fingerprint())
	now := time.Now()
	rec := &store.JoinToken{
		ID: tok.ID, SecretSHA256: pki.SecretHash(tok.Secret), Label: req.label, CreatedBy: req.creator,
		CreateTime: now, ExpireTime: now.Add(req.ttl), Uses: req.uses,
		MaxSlots: req.maxSlots, MaxMemoryBytes: req.maxMemory,
	}
	au.registerMu.Lock()
	defer au.registerMu.Unlock()
	c.gcTokens(now)
	if err := c.store.Save(&store.Changes{Tokens: []*store.JoinToken{rec}}); err != nil {
		return pki.Token{}, nil, err
	}
	au.mu.Lock()
	au.tokens[rec.ID] = rec
	au.mu.Unlock()
	c.log.Info("join token created", "token_id", rec.ID, "label", rec.Label, "uses", rec.Uses, "expires", rec.ExpireTime, "by", orNone(req.creator))
	return tok, rec, nil
}

// MintToken makes a single-use join token for one agent that a provider
// starts, valid for the default 15 minutes, capping the node at slots and
// memory when they are positive.
func (c *Coordinator) MintToken(label string, slots int32, memory int64) (string, error) {
	tok, _, err := c.createToken(tokenRequest{ttl: defaultTokenTTL, uses: 1, label: label, maxSlots: slots, maxMemory: memory})
	if err != nil {
		return "", err
	}
	return tok.String(), nil
}

// tokenState is "valid", "expired", "used" or "revoked".
func tokenState(t *store.JoinToken, now time.Time) string {
	switch {
	case t.Revoked:
		return "revoked"
	case t.Uses > 0 && t.Used >= t.Uses:
		return "used"
	case !now.Before(t.ExpireTime):
		return "expired"
	}
	return "valid"
}

// useToken checks a join token for a registration; the caller holds
// registerMu and, once the node is stored, counts the use. A token that
// does not parse or whose secret is wrong gets no detail; one whose secret
// is right says why it no longer works.
func (c *Coordinator) useToken(raw string, now time.Time) (*store.JoinToken, error) {
	rec, err := c.tokenRecord(raw)
	if err != nil {
		return nil, err
	}
	if st := tokenState(rec, now); st != "valid" {
		return nil, errorf(ErrUnauthenticated, "join token %s is %s: ask an admin for a new one ('cloudml-client token create')", rec.ID, st)
	}
	return rec, nil
}

// tokenRecord returns the record of a join token whose CA and secret are
// right, whatever its state.
func (c *Coordinator) tokenRecord(raw string) (*store.JoinToken, error) {
	tok, err := pki.ParseToken(raw)
	if err != nil {
		return nil, errorf(ErrUnauthenticated, "invalid join token: %v", err)
	}
	c.trust.mu.RLock()
	rec := c.trust.tokens[tok.ID]
	c.trust.mu.RUnlock()
	if tok.CAFingerprint != c.trust.ca.Fingerprint() || rec == nil || !pki.SecretMatches(tok.Secret, rec.SecretSHA256) {
		return nil, errorf(ErrUnauthenticated, "invalid join token: ask an admin for a new one ('cloudml-client token create')")
	}
	return rec, nil
}

// tokenLabel is the label of a join token whose secret is right, else "".
func (c *Coordinator) tokenLabel(raw string) string {
	tok, err := pki.ParseToken(raw)
	if err != nil {
		return ""
	}
	c.trust.mu.RLock()
	defer c.trust.mu.RUnlock()
	if rec := c.trust.tokens[tok.ID]; rec != nil && pki.SecretMatches(tok.Secret, rec.SecretSHA256) {
		return rec.Label
	}
	return ""
}

// gcTokens forgets tokens that stopped working more than tokenKeep ago;
// it runs with every new token (providers mint one per agent start), so
// the map stays as small as the tokens of the last day.
func (c *Coordinator) gcTokens(now time.Time) {
	au := c.trust
	au.mu.Lock()
	defer au.mu.Unlock()
	for id, t := range au.tokens {
		if tokenState(t, now) != "valid" && now.Sub(t.ExpireTime) > tokenKeep {
			delete(au.tokens, id) // the record stays on disk; it can never work again
		}
	}
}

func tokenInfo(t *store.JoinToken, now time.Time) *cloudmlv1.JoinTokenInfo {
	uses := t.Uses
	if uses == 0 {
		uses = -1
	}
	return &cloudmlv1.JoinTokenInfo{
		Id: t.ID, Label: t.Label, CreateTime: timestamppb.New(t.CreateTime), ExpireTime: timestamppb.New(t.ExpireTime),
		Uses: uses, Used: t.Used, State: tokenState(t, now), Nodes: slices.Clone(t.Nodes), CreatedBy: t.CreatedBy,
	}
}

// CreateJoinToken makes a join token for an admin.
func (s *clusterServer) CreateJoinToken(ctx context.Context, req *cloudmlv1.CreateJoinTokenRequest) (*cloudmlv1.CreateJoinTokenResponse, error) {
	ttl := defaultTokenTTL
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	uses := req.GetUses()
	switch {
	case uses == 0:
		uses = 1
	case uses == -1:
		uses = 0
	case uses < -1:
		return nil, toStatus(errorf(ErrInvalid, "uses must be -1 (any number), or positive, got %d", uses))
	}
	tok, rec, err := s.c.createToken(tokenRequest{ttl: ttl, uses: uses, label: req.GetLabel(), creator: callerFrom(ctx).Name,
		maxSlots: req.GetMaxSlots(), maxMemory: req.GetMaxMemoryBytes()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.CreateJoinTokenResponse{Token: tok.String(), Info: tokenInfo(rec, time.Now())}, nil
}

// ListJoinTokens lists tokens newest first.
func (s *clusterServer) ListJoinTokens(ctx context.Context, _ *cloudmlv1.ListJoinTokensRequest) (*cloudmlv1.ListJoinTokensResponse, error) {
	au := s.c.trust
	now := time.Now()
	au.mu.RLock()
	resp := &cloudmlv1.ListJoinTokensResponse{}
	for _, t := range au.tokens {
		if t.CreatedBy == "" && tokenState(t, now) != "valid" {
			continue // a provider's used token: one per agent start, noise
		}
		resp.Tokens = append(resp.Tokens, tokenInfo(t, now))
	}
	au.mu.RUnlock()
	slices.SortFunc(resp.Tokens, func(a, b *cloudmlv1.JoinTokenInfo) int {
		return b.CreateTime.AsTime().Compare(a.CreateTime.AsTime())
	})
	return resp, nil
}

// RevokeJoinToken makes a token unusable.
func (s *clusterServer) RevokeJoinToken(ctx context.Context, req *cloudmlv1.RevokeJoinTokenRequest) (*cloudmlv1.RevokeJoinTokenResponse, error) {
	c := s.c
	au := c.trust
	au.registerMu.Lock()
	defer au.registerMu.Unlock()
	au.mu.RLock()
	rec := au.tokens[req.GetId()]
	au.mu.RUnlock()
	if rec == nil {
		return nil, toStatus(errorf(ErrNotFound, "join token %q not found (see 'cloudml-client token ls')", req.GetId()))
	}
	next := *rec
	next.Revoked = true
	if err := c.store.Save(&store.Changes{Tokens: []*store.JoinToken{&next}}); err != nil {
		return nil, toStatus(err)
	}
	au.mu.Lock()
	au.tokens[next.ID] = &next
	au.mu.Unlock()
	c.log.Info("join token revoked", "token_id", next.ID, "by", callerFrom(ctx).Name)
	return &cloudmlv1.RevokeJoinTokenResponse{Info: tokenInfo(&next, time.Now())}, nil
}

func orNone(s string) string {
	if s == "" {
		return "coordinator"
	}
	return s
}

// capped bounds what a node claims by its cap: at least lo, at most limit.
func capped[T int32 | int64](claimed, lo, limit T) T {
	return min(max(claimed, lo), limit)
}

// nodeCaps are the caps of a node registered with tok.
func (c *Coordinator) nodeCaps(tok *store.JoinToken) (int32, int64) {
	slots, mem := c.cfg.MaxNodeSlots, c.cfg.MaxNodeMemoryBytes
	if tok.MaxSlots > 0 {
		slots = tok.MaxSlots
	}
	if tok.MaxMemoryBytes > 0 {
		mem = tok.MaxMemoryBytes
	}
	return slots, mem
}
