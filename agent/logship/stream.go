package logship

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// errStreamEnded means the coordinator ended a log stream while batches
// were still unacknowledged.
var errStreamEnded = errors.New("coordinator ended the log stream early")

// stream ships over one StreamLogs stream: it sends every batch as soon as
// it is closed, starting after the acknowledged seq, while a receiver
// applies the acknowledgements. It returns nil once Close was called and
// everything is acknowledged, otherwise why the stream broke (a gRPC
// status, errStalled, or ctx's error).
func (s *Shipper) stream(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.cfg.Client.StreamLogs(sctx)
	if err != nil {
		return err
	}
	if !s.isResumed() {
		// Ask how far the logs got before anything is numbered.
		if err := st.Send(&cloudmlv1.StreamLogsRequest{Ref: s.cfg.Ref}); err != nil {
			_, err = st.Recv() // the stream's status
			return err
		}
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.resume(resp)
	}
	var stalled atomic.Bool
	s.mu.Lock()
	s.sent = s.acked
	s.stall = time.AfterFunc(time.Hour, func() { stalled.Store(true); cancel() })
	s.stall.Stop()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stall.Stop()
		s.stall = nil
		s.mu.Unlock()
	}()

	progress := make(chan struct{}, 1)
	recvDone := make(chan struct{})
	var recvErr error
	go func() {
		defer close(recvDone)
		for {
			resp, err := st.Recv()
			if err != nil {
				recvErr = err
				return
			}
			if s.ack(resp.GetAckedSeq()) {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-recvDone
	}()
	ended := func() error {
		<-recvDone
		switch {
		case stalled.Load():
			return errStalled
		case errors.Is(recvErr, io.EOF):
			return errStreamEnded
		}
		return recvErr
	}

	for {
		req, finished := s.nextUnsent()
		if finished {
			st.CloseSend()
			s.mu.Lock()
			s.stall.Reset(s.cfg.CallTimeout) // bounds the wait for the coordinator's end
			s.mu.Unlock()
			<-recvDone
			return nil
		}
		if req != nil {
			if err := st.Send(req); err != nil {
				return ended() // the stream is over; Recv has the status
			}
			continue
		}
		select {
		case <-s.kick:
		case <-progress:
		case <-recvDone:
			return ended()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// nextUnsent builds the next stream request from the batches after those
// sent or acknowledged, up to MaxCallBytes (at least one batch), and marks
// them sent. finished is true once Close was called and every batch is
// acknowledged.
func (s *Shipper) nextUnsent() (req *cloudmlv1.StreamLogsRequest, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil, s.closed && s.cur == nil
	}
	// pending holds seqs acked+1, acked+2, ... in order.
	i := int(max(s.sent, s.acked) - s.acked)
	if i >= len(s.pending) {
		return nil, false
	}
	req = &cloudmlv1.StreamLogsRequest{Ref: s.cfg.Ref, Batches: s.take(s.pending[i:])}
	if s.sent <= s.acked {
		s.stall.Reset(s.cfg.CallTimeout) // the first unacknowledged batch
	}
	s.sent = req.Batches[len(req.Batches)-1].GetSeq()
	return req, false
}
