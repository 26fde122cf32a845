package simagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/reportbatch"
	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// simBuffer is the read and write buffer of a simulated node's
// connection. grpcopt's 256 KiB suit bulk logs; a thousand simulated nodes
// in one process would hold half a GiB of them for one line per attempt.
// Buffers are local to each end and change nothing on the wire.
const simBuffer = 32 << 10

// node is one simulated agent.
type node struct {
	f    *Fleet
	host string

	cc     *grpc.ClientConn
	client cloudmlv1.AgentServiceClient
	creds  credentials.TransportCredentials // the node certificate's
	// pulse answers heartbeats when the coordinator has a pulse process
	// (SessionStarted.heartbeat_port), dialed once at pulsePort.
	pulseCC   *grpc.ClientConn
	pulse     cloudmlv1.AgentServiceClient
	pulsePort int32
	// reports sends ReportTask calls: batched as the agent does, or one by
	// one (Config.SingleReports).
	reports interface {
		ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error)
	}
	id string
	// reportLogs is the current session's SessionStarted.report_logs: an
	// attempt's line then rides its end report, as the agent's does.
	reportLogs atomic.Bool

	mu      sync.Mutex
	seen    map[string]bool               // attempts ever received, so each runs at most once
	running map[string]*cloudmlv1.TaskRef // attempts in flight, told to a new session
	wg      sync.WaitGroup                // attempts in flight
}

func newNode(f *Fleet, host string) *node {
	return &node{f: f, host: host, seen: map[string]bool{}, running: map[string]*cloudmlv1.TaskRef{}}
}

func refKey(r *cloudmlv1.TaskRef) string {
	return fmt.Sprintf("%s/%d/%d", r.GetJobId(), r.GetTaskIndex(), r.GetAttempt())
}

func (n *node) dial(creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return n.dialAt(n.f.cfg.Addr, creds)
}

func (n *node) dialAt(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	opts := append(grpcopt.Dial(),
		grpc.WithReadBufferSize(simBuffer),
		grpc.WithWriteBufferSize(simBuffer),
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	return grpc.NewClient(addr, append(opts, n.f.cfg.DialOptions...)...)
}

// register trades the join token and a CSR for a node certificate, on a
// connection pinned to the token's CA, then dials with the certificate.
// Transient errors are retried; a refused token is not.
func (n *node) register(ctx context.Context) error {
	cfg := n.f.cfg
	tok, err := pki.ParseToken(cfg.JoinToken)
	if err != nil {
		return err
	}
	keyPEM, csr, err := pki.NewKeyRequest()
	if err != nil {
		return err
	}
	var pinned *x509.Certificate
	tlsCfg, err := pki.PinnedTLS(tok.CAFingerprint, func(c *x509.Certificate) { pinned = c })
	if err != nil {
		return err
	}
	cc, err := n.dial(credentials.NewTLS(tlsCfg))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := cloudmlv1.NewAgentServiceClient(cc)
	bo := backoff.New(cfg.BackoffMin, cfg.BackoffMax)
	var resp *cloudmlv1.RegisterResponse
	for {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		resp, err = client.Register(callCtx, &cloudmlv1.RegisterRequest{
			JoinToken: cfg.JoinToken, Csr: csr, Hostname: n.host, Address: "127.0.0.1",
			Slots: int32(cfg.Slots), MemoryBytes: 8 << 30, Runtime: "process",
		})
		cancel()
		n.f.rec.Observe(CallRegister, start, err)
		if err == nil {
			break
		}
		if status.Code(err) == codes.Unauthenticated {
			return fmt.Errorf("register: join token refused: %w", err)
		}
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
	if pinned == nil || !bytes.Equal(pki.ParseCAPEM(resp.GetCaCertificate()), pinned.Raw) {
		return errors.New("register: the CA the coordinator sent is not the one its connection showed")
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), keyPEM)
	if err != nil {
		return fmt.Errorf("register: unusable certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(resp.GetCaCertificate()) {
		return errors.New("register: the coordinator sent no CA certificate")
	}
	n.id = resp.GetNodeId()
	n.creds = credentials.NewTLS(pki.ClientTLS(pool, func() *tls.Certificate { return pair }))
	n.cc, err = n.dial(n.creds)
	if err != nil {
		return err
	}
	n.client = cloudmlv1.NewAgentServiceClient(n.cc)
	n.reports = n.client
	if !n.f.cfg.SingleReports {
		n.reports = reportbatch.New(observedBatches{n.client, n.f.rec}, n.f.cfg.CallTimeout)
	}
	return nil
}

// serve keeps a session open until ctx ends, opening a new one after each
// failure, then waits for the attempts in flight.
func (n *node) serve(ctx context.Context) {
	bo := backoff.New(n.f.cfg.BackoffMin, n.f.cfg.BackoffMax)
	first := true
	for ctx.Err() == nil {
		started, err := n.session(ctx, first)
		if started {
			first = false
			bo.Reset()
		}
		if ctx.Err() != nil {
			break
		}
		n.f.rec.Error(CallSession, err)
		n.f.log.Warn("session ended; will reconnect", "node", n.host, "error", err)
		if bo.Wait(ctx) != nil {
			break
		}
	}
	n.wg.Wait()
}

// session opens one Session and serves it until it fails; started says
// whether SessionStarted arrived.
func (n *node) session(ctx context.Context, first bool) (started bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.mu.Lock()
	running := make([]*cloudmlv1.TaskRef, 0, len(n.running))
	for _, r := range n.running {
		running = append(running, r)
	}
	n.mu.Unlock()
	start := time.Now()
	stream, err := n.client.Session(sctx, &cloudmlv1.SessionRequest{
		Running: running, Slots: int32(n.f.cfg.Slots), MemoryBytes: 8 << 30, Runtime: "process",
	})
	if err != nil {
		return false, err
	}
	msg, err := stream.Recv()
	if err != nil {
		return false, err
	}
	st := msg.GetStarted()
	if st == nil {
		return false, errors.New("the session's first message is not SessionStarted")
	}
	n.reportLogs.Store(st.GetReportLogs() && !n.f.cfg.SeparateLogs)
	n.usePulse(st.GetHeartbeatPort())
	n.f.rec.Observe(CallSession, start, nil)
	n.f.rec.sessionStarted(time.Now(), first)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		n.heartbeat(sctx, st.GetHeartbeatPeriod().AsDuration())
	}()
	defer func() {
		cancel()
		<-hbDone
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return true, err
		}
		if a := msg.GetAssignment(); a != nil {
			n.assign(ctx, a.GetRef())
		}
		// Cancels arrive for attempts the coordinator gave up; a simulated
		// attempt ends by itself within a few calls, and its reports then
		// get FAILED_PRECONDITION, which ends it.
	}
}

// heartbeat calls Heartbeat every period from when the last call began,
// sooner after a failure, as the agent does; Config.HeartbeatPeriod, when
// set, overrides the coordinator's period.
func (n *node) heartbeat(ctx context.Context, period time.Duration) {
	fixed := n.f.cfg.HeartbeatPeriod
	if fixed > 0 {
		period = fixed
	}
	if period <= 0 {
		period = 5 * time.Second
	}
	timer := time.NewTimer(period)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, n.f.cfg.CallTimeout)
		resp, err := n.beat(callCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		n.f.rec.Observe(CallHeartbeat, start, err)
		next := period
		if err == nil {
			if p := resp.GetPeriod().AsDuration(); p > 0 && fixed == 0 {
				period, next = p, p
			}
		} else {
			next = min(period/4, time.Second)
		}
		timer.Reset(max(next-time.Since(start), 0)) // from when the call began, as the agent's nextBeat
	}
}

// usePulse dials the coordinator's pulse at port, at the host of
// Config.Addr, unless it did already; port 0 leaves heartbeats on the
// session's connection.
func (n *node) usePulse(port int32) {
	if port == n.pulsePort {
		return
	}
	if n.pulseCC != nil {
		n.pulseCC.Close()
		n.pulseCC, n.pulse = nil, nil
	}
	n.pulsePort = port
	if port == 0 {
		return
	}
	host, _, err := net.SplitHostPort(n.f.cfg.Addr)
	if err == nil {
		n.pulseCC, err = n.dialAt(net.JoinHostPort(host, strconv.Itoa(int(port))), n.creds)
	}
	if err != nil {
		n.f.log.Warn("heartbeats go on the session's connection: cannot reach the coordinator's pulse", "node", n.host, "error", err)
		return
	}
	n.pulseCC.Connect() // the handshake now, not in the first beat's time
	n.pulse = cloudmlv1.NewAgentServiceClient(n.pulseCC)
}

// beat sends one heartbeat: to the pulse when there is one, and on the
// session's connection when there is none or it failed, as the agent does.
func (n *node) beat(ctx context.Context) (*cloudmlv1.HeartbeatResponse, error) {
	if n.pulse != nil {
		if resp, err := n.pulse.Heartbeat(ctx, &cloudmlv1.HeartbeatRequest{}); err == nil || ctx.Err() != nil {
			return resp, err
		}
	}
	return n.client.Heartbeat(ctx, &cloudmlv1.HeartbeatRequest{})
}

// assign starts an attempt unless this node has seen it before.
func (n *node) assign(ctx context.Context, ref *cloudmlv1.TaskRef) {
	key := refKey(ref)
	n.mu.Lock()
	if n.seen[key] {
		n.mu.Unlock()
		return
	}
	n.seen[key] = true
	n.running[key] = ref
	n.mu.Unlock()
	n.f.rec.assignedOnce(time.Now())
	n.wg.Go(func() {
		n.run(ctx, ref)
		n.mu.Lock()
		delete(n.running, key)
		n.mu.Unlock()
	})
}

// errStale ends an attempt the coordinator no longer wants.
var errStale = errors.New("attempt no longer wanted")

// run reports the attempt through its states (STAGING only with
// Config.ReportStaging) and ships one log line: with
// its end report when the coordinator takes logs in reports, else in a
// PublishLogs call before it.
func (n *node) run(ctx context.Context, ref *cloudmlv1.TaskRef) {
	report := func(call string, state cloudmlv1.TaskState, lastSeq uint64, logs []*cloudmlv1.LogBatch) error {
		return n.retry(ctx, call, func(callCtx context.Context) error {
			_, err := n.reports.ReportTask(callCtx, &cloudmlv1.ReportTaskRequest{
				Ref: ref, State: state, LastLogSeq: lastSeq, Time: timestamppb.Now(), LogBatches: logs,
			})
			return err
		})
	}
	if n.f.cfg.ReportStaging && report(CallStaging, cloudmlv1.TaskState_TASK_STATE_STAGING, 0, nil) != nil {
		return
	}
	if report(CallRunning, cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, nil) != nil {
		return
	}
	n.f.rec.ran(ref.GetJobId(), ref.GetTaskIndex())
	if n.f.cfg.NoLogs {
		report(CallSucceeded, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
		return
	}
	line := fmt.Appendf(nil, "task %d attempt %d on %s\n", ref.GetTaskIndex(), ref.GetAttempt(), n.host)
	logs := []*cloudmlv1.LogBatch{{Seq: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: line}}
	if n.reportLogs.Load() {
		report(CallSucceeded, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 1, logs)
		return
	}
	err := n.retry(ctx, CallLogs, func(callCtx context.Context) error {
		resp, err := n.client.PublishLogs(callCtx, &cloudmlv1.PublishLogsRequest{Ref: ref, Batches: logs})
		if err == nil && resp.GetAckedSeq() < 1 {
			return status.Error(codes.DataLoss, "log batch 1 not acknowledged")
		}
		return err
	})
	if err != nil {
		return
	}
	report(CallSucceeded, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 1, nil)
}

// retry makes call until it succeeds, the coordinator says the attempt is
// no longer wanted (errStale), or ctx ends. Each try is recorded.
func (n *node) retry(ctx context.Context, name string, call func(context.Context) error) error {
	bo := backoff.New(n.f.cfg.BackoffMin, n.f.cfg.BackoffMax)
	for {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, n.f.cfg.CallTimeout)
		err := call(callCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.f.rec.Observe(name, start, err)
		switch {
		case err == nil:
			return nil
		case status.Code(err) == codes.FailedPrecondition:
			return errStale
		}
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
}

func (n *node) close() {
	if n.cc != nil {
		n.cc.Close()
	}
	if n.pulseCC != nil {
		n.pulseCC.Close()
	}
}

// observedBatches records each ReportTasks call a node's batcher makes.
type observedBatches struct {
	cloudmlv1.AgentServiceClient
	rec *Recorder
}

func (o observedBatches) ReportTasks(ctx context.Context, in *cloudmlv1.ReportTasksRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTasksResponse, error) {
	start := time.Now()
	resp, err := o.AgentServiceClient.ReportTasks(ctx, in, opts...)
	o.rec.Observe(CallReportTasks, start, err)
	return resp, err
}
