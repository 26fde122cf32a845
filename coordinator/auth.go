package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/auth"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

type nodeIDKey struct{}

// nodeIDFrom returns the authenticated node of a call; handlers take the
// caller's identity from here only.
func nodeIDFrom(ctx context.Context) (string, error) {
	id, ok := ctx.Value(nodeIDKey{}).(string)
	if !ok || id == "" {
		return "", errorf(ErrUnauthenticated, "no node identity on this call")
	}
	return id, nil
}

// needsNode reports whether a method requires a node credential: every
// AgentService method except Register.
func needsNode(fullMethod string) bool {
	prefix := "/" + cloudmlv1.AgentService_ServiceDesc.ServiceName + "/"
	return strings.HasPrefix(fullMethod, prefix) && fullMethod != cloudmlv1.AgentService_Register_FullMethodName
}

// authenticate resolves the call's credential to a node id.
func (c *Coordinator) authenticate(ctx context.Context) (context.Context, error) {
	cred, ok := auth.FromIncoming(ctx)
	if !ok || cred == "" {
		return nil, errorf(ErrUnauthenticated, "missing node credential")
	}
	sum := credentialHash(cred)
	c.mu.Lock()
	id, ok := c.credentials[sum]
	c.mu.Unlock()
	if !ok {
		return nil, errorf(ErrUnauthenticated, "unknown node credential; register again")
	}
	return context.WithValue(ctx, nodeIDKey{}, id), nil
}

func (c *Coordinator) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !needsNode(info.FullMethod) {
		return handler(ctx, req)
	}
	nctx, err := c.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return handler(nctx, req)
}

func (c *Coordinator) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !needsNode(info.FullMethod) {
		return handler(srv, ss)
	}
	nctx, err := c.authenticate(ss.Context())
	if err != nil {
		return toStatus(err)
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: nctx})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

func credentialHash(cred string) string {
	sum := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(sum[:])
}

// tokenMatches compares bootstrap tokens in constant time.
func tokenMatches(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
