// Package auth carries a node's credential on its gRPC connection. The agent
// attaches it to every call; the coordinator resolves it to a node identity
// in an interceptor, so no request field ever names the caller. Mutual TLS
// will replace the bearer credential here and nowhere else.
package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// MetadataKey is the call-metadata key that carries the credential.
const MetadataKey = "authorization"

const bearer = "Bearer "

// NodeCredential returns per-RPC credentials that attach cred to every call.
func NodeCredential(cred string) credentials.PerRPCCredentials {
	return nodeCred(cred)
}

type nodeCred string

func (c nodeCred) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{MetadataKey: bearer + string(c)}, nil
}

// RequireTransportSecurity is false until mTLS lands: the coordinator binds
// to loopback or a private network by default.
func (nodeCred) RequireTransportSecurity() bool { return false }

// FromIncoming returns the credential of an incoming call, if any.
func FromIncoming(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	for _, v := range md.Get(MetadataKey) {
		if strings.HasPrefix(v, bearer) {
			return strings.TrimPrefix(v, bearer), true
		}
	}
	return "", false
}
