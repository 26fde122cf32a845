package logship

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/backoff"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// send ships pending batches until Close has been called and all are
// acknowledged, the coordinator rejects the attempt, or ctx ends. It
// streams, and publishes one call at a time once the coordinator answered
// StreamLogs with UNIMPLEMENTED.
func (s *Shipper) send(ctx context.Context) {
	defer close(s.done)
	if !s.await(ctx) {
		return
	}
	bo := backoff.New(s.cfg.BackoffMin, s.cfg.BackoffMax)
	log := s.cfg.Logger
	unary := false
	for {
		if unary {
			if !s.publish(ctx, bo) {
				return
			}
			continue
		}
		before := s.ackedSeq()
		err := s.stream(ctx)
		if err == nil {
			return // everything acknowledged after Close
		}
		switch {
		case status.Code(err) == codes.FailedPrecondition:
			s.fail(ErrRejected)
			return
		case status.Code(err) == codes.Unimplemented:
			log.Debug("coordinator has no StreamLogs; publishing one call at a time")
			s.resume(nil) // an old coordinator cannot say how far the logs got
			unary = true
			continue
		case ctx.Err() != nil:
			s.fail(ctx.Err())
			return
		}
		if s.ackedSeq() > before {
			bo.Reset()
		}
		log.Warn("log stream broke; will resend", "acked_seq", s.ackedSeq(), "error", err)
		if err := bo.Wait(ctx); err != nil {
			s.fail(err)
			return
		}
	}
}

// await waits until there is something to ship (a batch Close does not
// hold for the end report, or a Resume shipper's question) and marks the
// shipper started, so an attempt with no output opens no stream. It
// returns false when there never will be: Close came with no output, Carry
// took the batches, or ctx ended.
func (s *Shipper) await(ctx context.Context) bool {
	for {
		s.mu.Lock()
		switch {
		case s.taken:
			s.mu.Unlock()
			return false
		case !s.resumed || len(s.pending) > 0 && !s.held:
			s.started = true
			s.mu.Unlock()
			return true
		case s.closed && len(s.pending) == 0:
			s.mu.Unlock()
			return false
		}
		s.mu.Unlock()
		select {
		case <-s.kick:
		case <-ctx.Done():
			s.fail(ctx.Err())
			return false
		}
	}
}

// publish makes one PublishLogs call with the pending batches, or waits for
// some. It returns false when the sender is done (see send).
func (s *Shipper) publish(ctx context.Context, bo *backoff.Backoff) bool {
	log := s.cfg.Logger
	req, finished := s.next()
	if finished {
		return false
	}
	if req == nil {
		select {
		case <-s.kick:
			return true
		case <-ctx.Done():
			s.fail(ctx.Err())
			return false
		}
	}
	first := req.Batches[0].GetSeq()
	callCtx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	resp, err := s.cfg.Client.PublishLogs(callCtx, req)
	cancel()
	if err == nil && resp.GetAckedSeq() >= first {
		s.ack(resp.GetAckedSeq())
		bo.Reset()
		return true
	}
	switch {
	case status.Code(err) == codes.FailedPrecondition:
		s.fail(ErrRejected)
		return false
	case err != nil:
		log.Warn("publish logs failed; will resend", "first_seq", first, "error", err)
	default:
		log.Warn("publish logs made no progress; will resend", "first_seq", first, "acked_seq", resp.GetAckedSeq())
		s.ack(resp.GetAckedSeq())
	}
	if err := bo.Wait(ctx); err != nil {
		s.fail(err)
		return false
	}
	return true
}

// next builds the next request from the unacknowledged batches, up to
// MaxCallBytes (at least one batch). finished is true once Close was called
// and nothing is left.
func (s *Shipper) next() (req *cloudmlv1.PublishLogsRequest, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil, s.closed && s.cur == nil
	}
	req = &cloudmlv1.PublishLogsRequest{Ref: s.cfg.Ref, Batches: s.take(s.pending)}
	return req, false
}

// take returns the first of the batches as protos, up to MaxCallBytes (at
// least one). s.mu must be held.
func (s *Shipper) take(from []*batch) []*cloudmlv1.LogBatch {
	var out []*cloudmlv1.LogBatch
	size := 0
	for _, b := range from {
		if len(out) > 0 && size+len(b.data) > s.cfg.MaxCallBytes {
			break
		}
		size += len(b.data)
		out = append(out, &cloudmlv1.LogBatch{Seq: b.seq, Stream: b.stream, Data: b.data})
	}
	return out
}

// ack drops every batch up to seq, wakes blocked readers and moves the
// stream's acknowledgement deadline. It reports whether seq was news.
func (s *Shipper) ack(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq = min(seq, s.nextSeq-1) // never past what was made
	if seq <= s.acked {
		return false
	}
	s.acked = seq
	i := 0
	for ; i < len(s.pending) && s.pending[i].seq <= seq; i++ {
		s.unacked -= int64(len(s.pending[i].data))
		s.pending[i] = nil
	}
	s.pending = s.pending[i:]
	if s.stall != nil {
		if s.sent > s.acked {
			s.stall.Reset(s.cfg.CallTimeout)
		} else {
			s.stall.Stop()
		}
	}
	s.space.Broadcast()
	return true
}

func (s *Shipper) ackedSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

func (s *Shipper) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	s.space.Broadcast()
}

// errStalled means a stream went CallTimeout without an acknowledgement of
// what it had sent.
var errStalled = errors.New("no log acknowledgement in time")
