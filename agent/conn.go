package agent

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/reportbatch"
	"github.com/cloudml/cloudml/internal/grpcopt"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// dial makes a TLS client connection to the coordinator with creds.
func (a *Agent) dial(creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return a.dialAt(a.cfg.CoordinatorAddr, creds)
}

// dialAt makes a TLS client connection to addr with creds.
func (a *Agent) dialAt(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	opts := append(grpcopt.Dial(),
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	opts = append(opts, a.cfg.DialOptions...)
	return grpc.NewClient(addr, opts...)
}

// dialPulse connects to the coordinator's pulse (SessionStarted's
// heartbeat_port) at the host the agent dials for the coordinator, with
// the node certificate.
func (a *Agent) dialPulse(id *identity, port int32) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(a.cfg.CoordinatorAddr)
	if err != nil {
		return nil, fmt.Errorf("coordinator address %s: %w", a.cfg.CoordinatorAddr, err)
	}
	return a.dialAt(net.JoinHostPort(host, strconv.Itoa(int(port))), id.clientTLS())
}

// nodeConn is the connection that presents the node certificate. Attempts
// hold it across reconnects; it is swapped when the certificate changes (a
// renewal, a new registration).
type nodeConn struct {
	mu      sync.RWMutex // protects the fields below
	serial  string
	cc      *grpc.ClientConn
	client  cloudmlv1.AgentServiceClient
	retired []*grpc.ClientConn // replaced, closed a minute later or with n

	reports *reportbatch.Batcher // set once, by New
	// reportLogs is the last SessionStarted's report_logs: whether the
	// coordinator takes log batches in reports.
	reportLogs atomic.Bool
}

// ReportLogs implements attempt.ReportLogser.
func (n *nodeConn) ReportLogs() bool { return n.reportLogs.Load() }

// use returns a client that presents id's certificate, dialing when it
// changed. The old connection is closed once its calls end.
func (n *nodeConn) use(a *Agent, id *identity) (cloudmlv1.AgentServiceClient, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cc != nil && n.serial == id.serial() {
		return n.client, nil
	}
	cc, err := a.dial(id.clientTLS())
	if err != nil {
		return nil, err
	}
	if old := n.cc; old != nil {
		// Calls in flight on the old connection finish first.
		n.retired = append(n.retired, old)
		time.AfterFunc(time.Minute, func() { n.retire(old) })
	}
	n.serial, n.cc, n.client = id.serial(), cc, cloudmlv1.NewAgentServiceClient(cc)
	return n.client, nil
}

func (n *nodeConn) current() cloudmlv1.AgentServiceClient {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.client
}

// retire closes a replaced connection.
func (n *nodeConn) retire(cc *grpc.ClientConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i := slices.Index(n.retired, cc); i >= 0 {
		n.retired = slices.Delete(n.retired, i, i+1)
		cc.Close()
	}
}

func (n *nodeConn) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, cc := range n.retired {
		cc.Close()
	}
	n.retired = nil
	if n.cc != nil {
		n.cc.Close()
		n.cc, n.client, n.serial = nil, nil, ""
	}
}

var errNoConn = status.Error(codes.Unavailable, "not connected to the coordinator")

// ReportTask implements attempt.Client: the node's reports, of every
// attempt, go out together in ReportTasks calls (reportbatch), on the
// current connection.
func (n *nodeConn) ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	return n.reports.ReportTask(ctx, in, opts...)
}

// directReports is the current connection's report calls, which the
// node's batcher makes.
type directReports struct{ n *nodeConn }

func (d directReports) ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	c := d.n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.ReportTask(ctx, in, opts...)
}

func (d directReports) ReportTasks(ctx context.Context, in *cloudmlv1.ReportTasksRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTasksResponse, error) {
	c := d.n.current()
	if c == nil {
		return nil, errNoConn
	}
	return c.ReportTasks(ctx, in, opts...)
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
