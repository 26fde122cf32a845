package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// session opens one Session stream and serves it until it fails. It returns
// how long the session lived and why it ended.
func (a *Agent) session(ctx context.Context, client cloudmlv1.AgentServiceClient, id *identity) (time.Duration, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := client.Session(sctx, &cloudmlv1.SessionRequest{
		Running: a.running(), Slots: int32(a.cfg.Slots), MemoryBytes: a.memory, Runtime: a.runtimeName(),
	})
	if err != nil {
		return 0, err
	}
	first, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	started := first.GetStarted()
	if started == nil {
		return 0, fmt.Errorf("%w: the session's first message is not SessionStarted", errProtocol)
	}
	begin := time.Now()
	a.mu.Lock()
	a.nodeID = started.GetNodeId()
	a.mu.Unlock()
	a.node.reportLogs.Store(started.GetReportLogs())
	a.log.Info("session started", "node_id", started.GetNodeId(), "heartbeat_period", started.GetHeartbeatPeriod().AsDuration())
	a.sw.mu.Lock()
	a.sw.announced = false
	a.sw.mu.Unlock()
	go a.announceSwarm(sctx, client, false)

	beats := beatClients{session: client, log: a.log}
	if port := started.GetHeartbeatPort(); port > 0 {
		cc, err := a.dialPulse(id, port)
		if err != nil {
			a.log.Warn("heartbeats go on the session's connection: cannot reach the coordinator's pulse", "port", port, "error", err)
		} else {
			defer cc.Close()
			cc.Connect() // the handshake now, not in the first beat's time
			beats.pulse = cloudmlv1.NewAgentServiceClient(cc)
			a.log.Debug("heartbeats go to the coordinator's pulse", "target", cc.Target())
		}
	}
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.heartbeat(sctx, beats, started.GetHeartbeatPeriod().AsDuration(), cancel)
	}()
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		a.renewLoop(sctx, client, id, cancel)
	}()
	defer func() {
		cancel(nil)
		<-hbDone
		<-renewDone
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && cause != context.Canceled && ctx.Err() == nil {
				err = cause // the heartbeat ended the session
			}
			return time.Since(begin), err
		}
		switch cmd := msg.GetCommand().(type) {
		case *cloudmlv1.SessionResponse_Assignment:
			a.assign(ctx, cmd.Assignment)
		case *cloudmlv1.SessionResponse_Cancel:
			a.cancel(cmd.Cancel)
		case *cloudmlv1.SessionResponse_SwarmInit:
			go a.swarmInit(ctx, client, cmd.SwarmInit)
		case *cloudmlv1.SessionResponse_SwarmJoin:
			go a.swarmJoin(ctx, client, cmd.SwarmJoin)
		case *cloudmlv1.SessionResponse_StageJob:
			go a.stageJob(ctx, client, cmd.StageJob)
		case *cloudmlv1.SessionResponse_ExportImage:
			a.exportImage(ctx, client, cmd.ExportImage)
		case *cloudmlv1.SessionResponse_Started:
			a.log.Warn("ignoring a second SessionStarted")
		default:
			a.log.Warn("ignoring an unknown session command")
		}
	}
}

// beatClients are where heartbeats go: the coordinator's pulse process
// when it has one (nil otherwise), and the session's connection.
type beatClients struct {
	pulse, session cloudmlv1.AgentServiceClient
	log            hclog.Logger
	// pulseOff is until when the pulse is passed over after it failed.
	pulseOff time.Time
}

// pulseRest is how long a pulse that failed a heartbeat is passed over:
// the beats go on the session's connection meanwhile, without first
// waiting for a pulse that is gone.
const pulseRest = 30 * time.Second

// pulseWait is how long a heartbeat may wait for the pulse before it goes
// on the session's connection: half the period, at least a second (the
// coordinator marks a node down after three periods by default).
func pulseWait(period time.Duration) time.Duration { return max(period/2, time.Second) }

// call sends one heartbeat: to the pulse when there is one that has not
// failed lately, and on the session's connection when there is none or
// the pulse fails (within pulseWait, so the fallback has time).
func (b *beatClients) call(ctx context.Context, req *cloudmlv1.HeartbeatRequest, period time.Duration) (*cloudmlv1.HeartbeatResponse, error) {
	if b.pulse != nil && time.Now().After(b.pulseOff) {
		pctx, cancel := context.WithTimeout(ctx, pulseWait(period))
		resp, err := b.pulse.Heartbeat(pctx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		b.pulseOff = time.Now().Add(pulseRest)
		b.log.Warn("the coordinator's pulse failed a heartbeat; sending heartbeats on the session's connection for a while", "for", pulseRest, "error", err)
	}
	return b.session.Heartbeat(ctx, req)
}

// heartbeat calls Heartbeat every period (the response gives the next
// one), counted from when each began (nextBeat).
// An Unauthenticated answer ends the session so the node registers again.
func (a *Agent) heartbeat(ctx context.Context, beats beatClients, period time.Duration, end context.CancelCauseFunc) {
	client := beats.session
	if period <= 0 {
		period = 5 * time.Second
	}
	timer := time.NewTimer(period)
	defer timer.Stop()
	prevRuntime := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		runtimeErr := a.runtimeError(callCtx)
		resp, err := beats.call(callCtx, &cloudmlv1.HeartbeatRequest{RuntimeError: runtimeErr}, period)
		cancel()
		if a.reannounce(prevRuntime, runtimeErr) {
			// The daemon is back (perhaps a new one, outside the swarm), or
			// its membership was never reported.
			go a.announceSwarm(ctx, client, prevRuntime != "")
		}
		prevRuntime = runtimeErr
		next := period
		switch {
		case err == nil:
			if p := resp.GetPeriod().AsDuration(); p > 0 {
				period, next = p, p
			}
		case status.Code(err) == codes.Unauthenticated:
			end(err)
			return
		default:
			// Try again soon: a missed deadline marks the node down.
			a.log.Warn("heartbeat failed", "error", err)
			next = min(period/4, time.Second)
		}
		timer.Reset(nextBeat(next, time.Since(start)))
	}
}

// nextBeat is how long after a heartbeat that took elapsed (the runtime
// check and the call) the next one is due, interval after the last one
// began: counted from its answer instead, every slow answer would widen
// the gap between the beats the coordinator sees, and it marks a node
// down when that gap passes its deadline (at 1,000 nodes on 2 cores,
// answers took up to seconds). The simulated agents (internal/simagent)
// do the same.
func nextBeat(interval, elapsed time.Duration) time.Duration {
	return max(interval-elapsed, 0)
}

// errRenewed ends a session after the node certificate was renewed, so the
// next one runs on a connection that presents the new certificate.
var errRenewed = errors.New("node certificate renewed; reconnecting with it")

// renewLoop renews the node certificate at half its life, then ends the
// session (errRenewed). A failed renewal is retried every minute until the
// certificate expires.
func (a *Agent) renewLoop(ctx context.Context, client cloudmlv1.AgentServiceClient, id *identity, end context.CancelCauseFunc) {
	wait := time.Until(id.renewAt())
	for {
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		_, err := a.renew(ctx, client, id)
		if err == nil {
			end(errRenewed)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("renew node certificate failed; will retry", "expires", id.leaf.NotAfter, "error", err)
		wait = min(time.Minute, max(time.Until(id.leaf.NotAfter)/4, time.Second))
	}
}
