package logship

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// memCoord is a coordinator serving StreamLogs in memory, over channels
// instead of gRPC, into a store: it runs inside a synctest bubble. Each
// stream runs serve (nil: ackEach) in a goroutine of its own; the stream
// ends when serve returns, with its error as the status.
type memCoord struct {
	st    *store
	serve func(n int, ss *memServer) error

	mu      sync.Mutex
	streams int
}

func (c *memCoord) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest, _ ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error) {
	return c.st.PublishLogs(ctx, req)
}

func (c *memCoord) StreamLogs(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error) {
	c.mu.Lock()
	c.streams++
	n, serve := c.streams, c.serve
	c.mu.Unlock()
	if serve == nil {
		serve = c.ackEach
	}
	cs := &memClient{ctx: ctx, reqs: make(chan *cloudmlv1.StreamLogsRequest), resps: make(chan *cloudmlv1.StreamLogsResponse),
		closed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(cs.done)
		cs.err = serve(n, &memServer{cs})
	}()
	return cs, nil
}

// ackEach answers each request: a request with no batches with the store's
// progress, one with batches with the store's acknowledgement.
func (c *memCoord) ackEach(_ int, ss *memServer) error {
	for {
		req, err := ss.Recv()
		if err != nil {
			return nil
		}
		if err := ss.Send(c.answer(req)); err != nil {
			return nil
		}
	}
}

func (c *memCoord) answer(req *cloudmlv1.StreamLogsRequest) *cloudmlv1.StreamLogsResponse {
	if len(req.GetBatches()) == 0 {
		return c.st.progress()
	}
	resp, _ := c.st.PublishLogs(context.Background(), &cloudmlv1.PublishLogsRequest{Ref: req.GetRef(), Batches: req.GetBatches()})
	return &cloudmlv1.StreamLogsResponse{AckedSeq: resp.GetAckedSeq()}
}

// memClient is the agent's side of a memCoord stream.
type memClient struct {
	ctx       context.Context
	reqs      chan *cloudmlv1.StreamLogsRequest
	resps     chan *cloudmlv1.StreamLogsResponse
	closed    chan struct{} // CloseSend was called
	closeOnce sync.Once
	done      chan struct{} // serve returned; err is its error
	err       error
}

func (c *memClient) Send(req *cloudmlv1.StreamLogsRequest) error {
	select {
	case c.reqs <- req:
		return nil
	case <-c.done:
		return io.EOF
	case <-c.ctx.Done():
		return io.EOF
	}
}

func (c *memClient) Recv() (*cloudmlv1.StreamLogsResponse, error) {
	select {
	case resp := <-c.resps:
		return resp, nil
	case <-c.done:
		if c.err == nil {
			return nil, io.EOF
		}
		return nil, c.err
	case <-c.ctx.Done():
		return nil, status.FromContextError(c.ctx.Err()).Err()
	}
}

func (c *memClient) CloseSend() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memClient) Context() context.Context     { return c.ctx }
func (c *memClient) Header() (metadata.MD, error) { return nil, nil }
func (c *memClient) Trailer() metadata.MD         { return nil }
func (c *memClient) SendMsg(any) error            { return status.Error(codes.Unimplemented, "SendMsg") }
func (c *memClient) RecvMsg(any) error            { return status.Error(codes.Unimplemented, "RecvMsg") }

// memServer is the coordinator's side of a memCoord stream.
type memServer struct{ c *memClient }

// Recv returns the next request, io.EOF after CloseSend, or the error of
// the agent's context.
func (s *memServer) Recv() (*cloudmlv1.StreamLogsRequest, error) {
	select {
	case req := <-s.c.reqs:
		return req, nil
	case <-s.c.closed:
		return nil, io.EOF
	case <-s.c.ctx.Done():
		return nil, s.c.ctx.Err()
	}
}

func (s *memServer) Send(resp *cloudmlv1.StreamLogsResponse) error {
	select {
	case s.c.resps <- resp:
		return nil
	case <-s.c.ctx.Done():
		return s.c.ctx.Err()
	}
}

// Context is the agent's stream context: done when the agent gives the
// stream up.
func (s *memServer) Context() context.Context { return s.c.ctx }
