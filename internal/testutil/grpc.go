package testutil

import (
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/pki"
)

// ServeGRPC serves the services register adds over TLS on an in-memory
// listener until the test ends, and returns the dial options that reach it
// as a client ("test-client").
func ServeGRPC(t testing.TB, register func(*grpc.Server)) []grpc.DialOption {
	t.Helper()
	s := ServeTLS(t, register)
	return []grpc.DialOption{s.Dialer, grpc.WithTransportCredentials(s.PKI.ClientCreds(s.PKI.Pair(pki.RoleClient, "test-client", time.Hour)))}
}

// ConnectGRPC is ServeGRPC and a client connection to the server, closed
// when the test ends.
func ConnectGRPC(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///bufnet", ServeGRPC(t, register)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
