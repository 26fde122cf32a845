// Package reportbatch sends a node's task reports to the coordinator in
// ReportTasks calls: a report made while the node's previous call is in
// flight waits for it and goes out with the others that queued meanwhile.
// A quiet node sends each report at once, alone; a busy one makes one call
// for many, so its calls (and the coordinator's work per call) do not grow
// with the number of tasks it ends. Nomad's client batches its allocation
// updates the same way.
//
// A Batcher has ReportTask's signature, so the code that reports an
// attempt (its order, retries and backoff) is the same with or without it.
package reportbatch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// MaxReports is the most reports one call carries (the coordinator's
// limit); more wait for the next call.
const MaxReports = 1000

// MaxCallBytes bounds the reports of one call, which may carry log
// batches (an attempt's short output rides its end report): half the
// coordinator's default 8 MiB per message. A single larger report still
// goes, alone.
const MaxCallBytes = 4 << 20

// Client is the part of the AgentService client a Batcher calls.
type Client interface {
	ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error)
	ReportTasks(ctx context.Context, in *cloudmlv1.ReportTasksRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTasksResponse, error)
}

// Batcher queues reports and sends them, one call at a time.
type Batcher struct {
	client  Client
	timeout time.Duration
	// single is set once the coordinator answered Unimplemented: reports
	// then go out one ReportTask call each.
	single atomic.Bool

	mu      sync.Mutex
	queue   []*pending
	sending bool // a goroutine is sending the queue
}

// pending is one queued report and where its result goes.
type pending struct {
	req    *cloudmlv1.ReportTaskRequest
	result chan error // buffered: the sender never waits for a caller that left
}

// New returns a Batcher that calls client, each call bounded by timeout
// (10s when zero).
func New(client Client, timeout time.Duration) *Batcher {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Batcher{client: client, timeout: timeout}
}

// ReportTask queues req for the next call and waits for its result: nil
// once the coordinator holds it, else the status error ReportTask would
// have returned. A caller that gives up (ctx) may still see its report
// applied, as with any call that times out; reports are idempotent.
func (b *Batcher) ReportTask(ctx context.Context, req *cloudmlv1.ReportTaskRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	if b.single.Load() {
		return b.client.ReportTask(ctx, req)
	}
	p := &pending{req: req, result: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	start := !b.sending
	b.sending = true
	b.mu.Unlock()
	if start {
		go b.send()
	}
	select {
	case err := <-p.result:
		if err != nil {
			return nil, err
		}
		return &cloudmlv1.ReportTaskResponse{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// send makes calls until the queue is empty.
func (b *Batcher) send() {
	for {
		b.mu.Lock()
		n, size := 0, 0
		for n < min(len(b.queue), MaxReports) {
			if size += proto.Size(b.queue[n].req); size > MaxCallBytes && n > 0 {
				break
			}
			n++
		}
		if n == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		b.call(batch)
	}
}

// call sends batch in one ReportTasks call and hands out the results;
// to a coordinator older than ReportTasks, one ReportTask call each.
func (b *Batcher) call(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if !b.single.Load() {
		if !b.callBatch(ctx, batch) { // handed out
			return
		}
		b.single.Store(true)
	}
	for _, p := range batch {
		_, err := b.client.ReportTask(ctx, p.req)
		p.result <- err
	}
}

// callBatch makes the ReportTasks call and hands out its results; false
// when the coordinator does not implement it, with nothing handed out.
func (b *Batcher) callBatch(ctx context.Context, batch []*pending) (unimplemented bool) {
	req := &cloudmlv1.ReportTasksRequest{Reports: make([]*cloudmlv1.ReportTaskRequest, len(batch))}
	for i, p := range batch {
		req.Reports[i] = p.req
	}
	resp, err := b.client.ReportTasks(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		return true
	}
	if err == nil && len(resp.GetResults()) != len(batch) {
		err = status.Error(codes.Internal, fmt.Sprintf("the coordinator answered %d results for %d reports", len(resp.GetResults()), len(batch)))
	}
	for i, p := range batch {
		if err != nil {
			p.result <- err
			continue
		}
		r := resp.GetResults()[i]
		if code := codes.Code(r.GetCode()); code != codes.OK {
			p.result <- status.Error(code, r.GetMessage())
			continue
		}
		p.result <- nil
	}
	return false
}
