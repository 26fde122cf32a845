package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/grpcopt"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Sentinel errors.
var (
	// ErrInvalidSpec: a job spec failed validation before it was sent.
	ErrInvalidSpec = errors.New("invalid job spec")
	// ErrGaveUp: a log stream lost the coordinator and it did not come
	// back within LogOptions.Reconnect.
	ErrGaveUp = errors.New("gave up reconnecting")
	// ErrPushImage: an image the local Docker has could not be pushed to
	// the coordinator (the job was not submitted).
	ErrPushImage = errors.New("push image")
)

// Client talks to one coordinator. It is safe for concurrent use; Close
// it when done.
type Client struct {
	cfg     Config
	conn    *grpc.ClientConn
	jobs    cloudmlv1.JobServiceClient
	cluster cloudmlv1.ClusterServiceClient
}

// New makes a Client for cfg. It does not wait for the coordinator: the
// first call that needs it connects, and an unreachable coordinator is
// that call's Unavailable error.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := append(grpcopt.Dial(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxRecvMsgSize)))
	if cfg.TransportCredentials != nil {
		opts = append(opts, grpc.WithTransportCredentials(cfg.TransportCredentials))
	}
	if cfg.PerRPCCredentials != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(cfg.PerRPCCredentials))
	}
	conn, err := grpc.NewClient(cfg.Address, append(opts, cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to the coordinator at %q: %w (a credential file gives the address and TLS identity: ConfigFromFile)", cfg.Address, err)
	}
	return &Client{
		cfg:     cfg,
		conn:    conn,
		jobs:    cloudmlv1.NewJobServiceClient(conn),
		cluster: cloudmlv1.NewClusterServiceClient(conn),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Address is the coordinator address the client dials.
func (c *Client) Address() string { return c.cfg.Address }

// Conn is the client's connection, for services this package does not
// wrap yet.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// unary bounds one unary call by the configured timeout.
func (c *Client) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CallTimeout)
}
