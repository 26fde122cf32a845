package coordinator

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Authorisation. Every call is checked here, before its handler, against
// the roles that may make it; nothing else decides who may call what. The
// table is closed: a method missing from it is refused for everyone.

var (
	clientRoles = []pki.Role{pki.RoleClient, pki.RoleAdmin}
	adminRoles  = []pki.Role{pki.RoleAdmin}
	nodeRoles   = []pki.Role{pki.RoleNode}
)

// methodRoles maps every served method to the roles allowed to call it.
// nil marks a method any caller may use: the health service, and
// Register, which its join token authorises. A service listed by name covers all its methods; a method
// listed by full name overrides it.
var methodRoles = func() map[string][]pki.Role {
	m := map[string][]pki.Role{
		"/" + healthpb.Health_ServiceDesc.ServiceName + "/":          nil,
		"/" + cloudmlv1.AgentService_ServiceDesc.ServiceName + "/":   nodeRoles,
		"/" + cloudmlv1.JobService_ServiceDesc.ServiceName + "/":     clientRoles,
		"/" + cloudmlv1.ClusterService_ServiceDesc.ServiceName + "/": clientRoles,
		cloudmlv1.AgentService_Register_FullMethodName:               nil,
		cloudmlv1.AgentService_BucketToken_FullMethodName:            nodeRoles, // lends a credential: nodes alone, named here so no service default can widen it
		cloudmlv1.ClusterService_CreateJoinToken_FullMethodName:      adminRoles,
		cloudmlv1.ClusterService_ListJoinTokens_FullMethodName:       adminRoles,
		cloudmlv1.ClusterService_RevokeJoinToken_FullMethodName:      adminRoles,
		cloudmlv1.ClusterService_CreateCredential_FullMethodName:     adminRoles,
		cloudmlv1.ClusterService_ListCredentials_FullMethodName:      adminRoles,
		cloudmlv1.ClusterService_RevokeCredential_FullMethodName:     adminRoles,
		cloudmlv1.ClusterService_RemoveNode_FullMethodName:           adminRoles,
		cloudmlv1.ClusterService_ScalePool_FullMethodName:            adminRoles,
		cloudmlv1.ClusterService_ListMachines_FullMethodName:         adminRoles,
		cloudmlv1.ClusterService_DeleteMachines_FullMethodName:       adminRoles,
		cloudmlv1.ClusterService_CollectGarbage_FullMethodName:       adminRoles,
	}
	return m
}()

// rolesFor returns the roles allowed to call fullMethod and whether the
// method is known at all.
func rolesFor(fullMethod string) ([]pki.Role, bool) {
	if r, ok := methodRoles[fullMethod]; ok {
		return r, true
	}
	i := strings.LastIndex(fullMethod, "/")
	if i < 0 {
		return nil, false
	}
	r, ok := methodRoles[fullMethod[:i+1]]
	return r, ok
}

type callerKey struct{}

// callerFrom returns the verified identity of a call; the zero Identity
// for open methods called without a certificate.
func callerFrom(ctx context.Context) pki.Identity {
	id, _ := ctx.Value(callerKey{}).(pki.Identity)
	return id
}

// nodeIDFrom returns the authenticated node of a call; handlers take the
// caller's identity from here only.
func nodeIDFrom(ctx context.Context) (string, error) {
	id := callerFrom(ctx)
	if id.Role != pki.RoleNode || id.Name == "" {
		return "", errorf(ErrUnauthenticated, "no node certificate on this call")
	}
	return id.Name, nil
}

// authorize resolves the caller of fullMethod and checks its role.
func (c *Coordinator) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	roles, known := rolesFor(fullMethod)
	if !known {
		return nil, errorf(ErrPermissionDenied, "%s is not a method this coordinator serves to anyone", fullMethod)
	}
	cert := pki.PeerCert(ctx)
	if roles == nil {
		// Open: a certificate, if any, is still checked, so handlers may
		// trust callerFrom.
		if cert == nil {
			return ctx, nil
		}
	}
	id, err := c.trust.identify(cert, time.Now())
	if err != nil {
		return nil, errorf(ErrUnauthenticated, "%s", authHint(err))
	}
	if roles != nil && !hasRole(roles, id.Role) {
		return nil, errorf(ErrPermissionDenied, "a %s certificate (%s) may not call %s; it takes %s", id.Role, id.Name, shortMethod(fullMethod), roleList(roles))
	}
	return context.WithValue(ctx, callerKey{}, id), nil
}

// authHint turns an identification error into a message that says what to
// do next.
func authHint(err error) string {
	switch {
	case errors.Is(err, pki.ErrNoCertificate):
		return "no client certificate: use a credential file (cloudml-client finds ~/.cloudml/config, or give --config); agents register with a join token first"
	case errors.Is(err, pki.ErrExpired):
		return err.Error() + ": an agent needs a new join token; a client needs a new credential ('cloudml-client credential create')"
	case errors.Is(err, pki.ErrUnknownCA):
		return err.Error() + ": the credential belongs to another coordinator (or that coordinator's CA was rotated)"
	}
	return err.Error()
}

func hasRole(roles []pki.Role, r pki.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func roleList(roles []pki.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = "a " + string(r)
	}
	return strings.Join(s, " or ") + " certificate"
}

func shortMethod(full string) string {
	if i := strings.LastIndex(full, "."); i >= 0 {
		return strings.Replace(full[i+1:], "/", ".", 1)
	}
	return full
}

func (c *Coordinator) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	actx, err := c.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, toStatus(err)
	}
	return handler(actx, req)
}

func (c *Coordinator) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	actx, err := c.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return toStatus(err)
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: actx})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
