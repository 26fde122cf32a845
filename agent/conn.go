package agent

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/auth"
	"github.com/cloudml/cloudml/internal/grpcopt"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// dial makes a client connection to the coordinator; extra options (the
// node credential) come after the configured ones.
func (a *Agent) dial(extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts := append(grpcopt.Dial(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	opts = append(opts, a.cfg.DialOptions...)
	opts = append(opts, extra...)
	return grpc.NewClient(a.cfg.CoordinatorAddr, opts...)
}

// nodeConn is the connection that carries the node credential. Attempts
// hold it across reconnects; it is swapped when the node registers again.
type nodeConn struct {
	mu     sync.RWMutex // protects the fields below
	cred   string
	cc     *grpc.ClientConn
	client cloudmlv1.AgentServiceClient
}

// use returns a client that carries cred, dialing when cred changed.
func (n *nodeConn) use(a *Agent, cred string) (cloudmlv1.AgentServiceClient, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cc != nil && n.cred == cred {
		return n.client, nil
	}
	cc, err := a.dial(grpc.WithPerRPCCredentials(auth.NodeCredential(cred)))
	if err != nil {
		return nil, err
	}
	if n.cc != nil {
		n.cc.Close()
	}
	n.cred, n.cc, n.client = cred, cc, cloudmlv1.NewAgentServiceClient(cc)
	return n.client, nil
}

func (n *nodeConn) current() cloudmlv1.AgentServiceClient {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.client
}

func (n *nodeConn) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cc != nil {
		n.cc.Close()
		n.cc, n.client, n.cred = nil, nil, ""
	}
}

var errNoConn = status.Error(codes.Unavailable, "not connected to the coordinator")

// ReportTask implements attempt.Client on the current connection.
func (n *nodeConn) ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	c := n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.ReportTask(ctx, in, opts...)
}

// PublishLogs implements attempt.Client on the current connection.
func (n *nodeConn) PublishLogs(ctx context.Context, in *cloudmlv1.PublishLogsRequest, opts ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error) {
	c := n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.PublishLogs(ctx, in, opts...)
}

// StreamLogs implements attempt.Client on the current connection.
func (n *nodeConn) StreamLogs(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error) {
	c := n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.StreamLogs(ctx, opts...)
}
