package logship

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/backoff"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// send publishes pending batches until Close has been called and all are
// acknowledged, the coordinator rejects the attempt, or ctx ends.
func (s *Shipper) send(ctx context.Context) {
	defer close(s.done)
	bo := backoff.New(s.cfg.BackoffMin, s.cfg.BackoffMax)
	log := s.cfg.Logger
	for {
		req, finished := s.next()
		if finished {
			return
		}
		if req == nil {
			select {
			case <-s.kick:
				continue
			case <-ctx.Done():
				s.fail(ctx.Err())
				return
			}
		}
		first := req.Batches[0].GetSeq()
		callCtx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		resp, err := s.cfg.Client.PublishLogs(callCtx, req)
		cancel()
		s.mu.Lock()
		s.attempts++
		s.mu.Unlock()
		if err == nil && resp.GetAckedSeq() >= first {
			s.ack(resp.GetAckedSeq())
			bo.Reset()
			continue
		}
		switch {
		case status.Code(err) == codes.FailedPrecondition:
			s.fail(ErrRejected)
			return
		case err != nil:
			log.Warn("publish logs failed; will resend", "first_seq", first, "error", err)
		default:
			log.Warn("publish logs made no progress; will resend", "first_seq", first, "acked_seq", resp.GetAckedSeq())
			s.ack(resp.GetAckedSeq())
		}
		if err := bo.Wait(ctx); err != nil {
			s.fail(err)
			return
		}
	}
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
	req = &cloudmlv1.PublishLogsRequest{Ref: s.cfg.Ref}
	size := 0
	for _, b := range s.pending {
		if len(req.Batches) > 0 && size+len(b.data) > s.cfg.MaxCallBytes {
			break
		}
		size += len(b.data)
		req.Batches = append(req.Batches, &cloudmlv1.LogBatch{Seq: b.seq, Stream: b.stream, Data: b.data})
	}
	return req, false
}

// ack drops every batch up to seq and wakes blocked readers.
func (s *Shipper) ack(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.acked {
		return
	}
	s.acked = seq
	i := 0
	for ; i < len(s.pending) && s.pending[i].seq <= seq; i++ {
		s.unacked -= int64(len(s.pending[i].data))
		s.pending[i] = nil
	}
	s.pending = s.pending[i:]
	s.space.Broadcast()
}

func (s *Shipper) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	s.space.Broadcast()
}
