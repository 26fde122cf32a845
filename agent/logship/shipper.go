package logship

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrRejected is returned when the coordinator answers FAILED_PRECONDITION:
// it no longer wants this attempt.
var ErrRejected = errors.New("coordinator no longer wants this attempt")

// Publisher is the part of the AgentService client the shipper uses. It
// ships over StreamLogs and falls back to PublishLogs when the coordinator
// does not implement it.
type Publisher interface {
	PublishLogs(ctx context.Context, in *cloudmlv1.PublishLogsRequest, opts ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error)
	StreamLogs(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error)
}

// Config configures a Shipper. Zero durations and sizes take the defaults.
type Config struct {
	// Ref names the attempt.
	Ref *cloudmlv1.TaskRef
	// Client publishes batches.
	Client Publisher
	// BatchBytes closes a batch once it holds this much; default 512 KiB.
	BatchBytes int
	// FlushInterval closes a batch this long after it opened; default 100ms.
	FlushInterval time.Duration
	// MaxCallBytes caps the batches sent in one call or stream message;
	// default 2 MiB.
	MaxCallBytes int
	// MaxUnacked blocks the readers while this much is unacknowledged
	// (which also bounds what a stream has in flight); default 64 MiB.
	MaxUnacked int64
	// CallTimeout bounds each PublishLogs call, and how long a stream may
	// wait for an acknowledgement of what it sent; default 10s.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound the retry delay; defaults 200ms, 10s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives shipping errors; nil discards them.
	Logger hclog.Logger
	// Resume continues an attempt that an earlier agent may have shipped
	// part of: a task container this agent attached to after a restart,
	// whose output it reads again from the start. Before the first batch
	// the shipper asks the coordinator how far the logs got, numbers its
	// batches from there and skips the bytes of each stream already stored.
	// Until the answer comes, Copy waits (the container does not: Docker
	// keeps its output).
	Resume bool
	// CarryBytes, when positive, lets Close leave the attempt's output for
	// its end report instead of shipping it: when nothing has left the node
	// by Close and the batches hold at most this much, Close returns at
	// once and Carry hands them over (ReportTaskRequest.log_batches: one
	// call instead of a log stream and a report). Zero ships everything.
	CarryBytes int
	// CarryWait bounds how long batches left for the end report wait for
	// Carry; then they are shipped as usual, so a slow upload of results
	// does not hold back output that someone follows; default 1s.
	CarryWait time.Duration
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BatchBytes, 512<<10)
	def(&c.MaxCallBytes, 2<<20)
	if c.MaxUnacked <= 0 {
		c.MaxUnacked = 64 << 20
	}
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&c.FlushInterval, 100 * time.Millisecond}, {&c.CallTimeout, 10 * time.Second}, {&c.CarryWait, time.Second},
		{&c.BackoffMin, 200 * time.Millisecond}, {&c.BackoffMax, 10 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.d
		}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

type batch struct {
	seq    uint64
	stream cloudmlv1.LogStream
	data   []byte
}

// Shipper batches and ships one attempt's output. Create it with New, feed
// it with Copy (one goroutine per stream), end it with Close.
type Shipper struct {
	cfg  Config
	kick chan struct{} // wakes the sender; capacity 1
	done chan struct{} // closed when the sender exits

	mu      sync.Mutex // protects the fields below
	space   *sync.Cond // signalled when unacked shrinks or err is set
	cur     *batch     // the open batch, nil if none
	gen     uint64     // counts opened batches, for the flush timer
	timer   *time.Timer
	pending []*batch // closed batches not yet acknowledged, by seq
	nextSeq uint64
	acked   uint64
	sent    uint64      // the highest seq sent on the current stream
	stall   *time.Timer // the current stream's acknowledgement deadline
	unacked int64
	closed  bool
	err     error // terminal sender error
	tails   map[cloudmlv1.LogStream]string
	// resumed is false while a Resume shipper waits for the coordinator's
	// progress; skip is what is left to drop of each stream.
	resumed bool
	skip    map[cloudmlv1.LogStream]int64
	// started is set once the sender began to ship (or to ask, for
	// Resume); from then on Close never holds batches back. held means
	// Close left them for the end report (until holdTimer fires), taken
	// that Carry took them and the sender ships nothing.
	started, held, taken bool
	holdTimer            *time.Timer
}

// New returns a Shipper and starts its sender, which stops when ctx ends or
// Close has seen every batch acknowledged.
func New(ctx context.Context, cfg Config) *Shipper {
	cfg.setDefaults()
	s := &Shipper{
		cfg:     cfg,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		nextSeq: 1,
		tails:   map[cloudmlv1.LogStream]string{},
		resumed: !cfg.Resume,
		skip:    map[cloudmlv1.LogStream]int64{},
	}
	s.space = sync.NewCond(&s.mu)
	go s.send(ctx)
	return s
}

// add appends whole lines (plus a "\n" when newline is set) to the open
// batch of stream, blocking while too much is unacknowledged. It cuts data
// at line boundaries so a batch stays within BatchBytes unless one line is
// longer than that.
func (s *Shipper) add(stream cloudmlv1.LogStream, data []byte, newline bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for (!s.resumed || s.unacked >= s.cfg.MaxUnacked) && s.err == nil {
		s.space.Wait()
	}
	if s.err != nil {
		return // the sender gave up; drain without keeping
	}
	if data, newline = s.skipStored(stream, data, newline); len(data) == 0 && !newline {
		return
	}
	if s.cur != nil && s.cur.stream != stream {
		s.closeCur()
	}
	for len(data) > 0 || newline {
		if s.cur == nil {
			s.open(stream, len(data))
		}
		n := len(data)
		if room := s.cfg.BatchBytes - len(s.cur.data); n+1 > room {
			if i := bytes.LastIndexByte(data[:min(room, n)], '\n'); i >= 0 {
				n = i + 1
			} else if len(s.cur.data) > 0 {
				s.closeCur()
				continue
			} else if i := bytes.IndexByte(data, '\n'); i >= 0 {
				n = i + 1 // one line longer than a batch
			}
		}
		s.cur.data = append(s.cur.data, data[:n]...)
		s.unacked += int64(n)
		data = data[n:]
		if len(data) == 0 && newline {
			s.cur.data = append(s.cur.data, '\n')
			s.unacked++
			newline = false
		}
		if len(s.cur.data) >= s.cfg.BatchBytes {
			s.closeCur()
		}
	}
}

// skipStored drops the start of data (and the added newline) that an
// earlier agent shipped already (see Config.Resume). s.mu must be held.
func (s *Shipper) skipStored(stream cloudmlv1.LogStream, data []byte, newline bool) ([]byte, bool) {
	k := s.skip[stream]
	if k == 0 {
		return data, newline
	}
	n := int(min(k, int64(len(data))))
	data, k = data[n:], k-int64(n)
	if k > 0 && newline { // the stored copy has the newline this adds
		newline, k = false, k-1
	}
	s.skip[stream] = k
	return data, newline
}

// resume applies the coordinator's answer to a Resume shipper's question
// (nil: none can come) and lets Copy go on.
func (s *Shipper) resume(resp *cloudmlv1.StreamLogsResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resumed {
		return
	}
	s.resumed = true
	if acked := resp.GetAckedSeq(); acked > 0 {
		// No batch exists yet: add waited for this.
		s.acked, s.sent, s.nextSeq = acked, acked, acked+1
		s.skip[cloudmlv1.LogStream_LOG_STREAM_STDOUT] = int64(resp.GetStdoutBytes())
		s.skip[cloudmlv1.LogStream_LOG_STREAM_STDERR] = int64(resp.GetStderrBytes())
		s.cfg.Logger.Info("resuming logs shipped before", "acked_seq", acked,
			"stdout_bytes", resp.GetStdoutBytes(), "stderr_bytes", resp.GetStderrBytes())
	}
	s.space.Broadcast()
}

func (s *Shipper) isResumed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed
}

// open starts a batch of stream and its flush timer. s.mu must be held.
func (s *Shipper) open(stream cloudmlv1.LogStream, hint int) {
	s.cur = &batch{stream: stream, data: make([]byte, 0, min(s.cfg.BatchBytes, max(4<<10, 2*hint+1)))}
	s.gen++
	gen := s.gen
	s.timer = time.AfterFunc(s.cfg.FlushInterval, func() { s.flushGen(gen) })
}

// flushGen closes the open batch if it is still batch number gen.
func (s *Shipper) flushGen(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.gen == gen {
		s.closeCur()
	}
}

// closeCur numbers the open batch and queues it. s.mu must be held.
func (s *Shipper) closeCur() {
	s.timer.Stop()
	s.cur.seq = s.nextSeq
	s.nextSeq++
	s.pending = append(s.pending, s.cur)
	s.cur = nil
	s.wake()
}

// wake tells the sender that something changed (kick holds one wake-up).
func (s *Shipper) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close closes the open batch and waits until every batch is acknowledged.
// It returns the last sequence number (0 if there was no output). With
// CarryBytes it may instead leave the batches for the end report and
// return at once; Carry then takes them.
func (s *Shipper) Close(ctx context.Context) (lastSeq uint64, err error) {
	s.mu.Lock()
	s.closed = true
	if s.cur != nil {
		s.closeCur()
	}
	lastSeq = s.nextSeq - 1
	if s.cfg.CarryBytes > 0 && !s.started && s.err == nil && len(s.pending) > 0 && s.unacked <= int64(min(s.cfg.CarryBytes, s.cfg.MaxCallBytes)) {
		s.held = true
		s.holdTimer = time.AfterFunc(s.cfg.CarryWait, s.release)
		s.mu.Unlock()
		return lastSeq, nil
	}
	s.mu.Unlock()
	s.wake()
	return lastSeq, s.wait(ctx)
}

// wait waits for the sender to stop and returns why it stopped early.
func (s *Shipper) wait(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Err()
}

// release ships the batches Close held once Carry did not take them in
// time.
func (s *Shipper) release() {
	s.mu.Lock()
	s.held = false
	s.mu.Unlock()
	s.wake()
}

// Carry returns the batches Close left for the end report, which must
// carry them; the shipper then ships nothing. When Close left none, their
// wait ran out and they were shipped, or take is false (the coordinator
// the report goes to no longer takes logs in reports), it returns none
// once every batch is acknowledged, as Close does.
func (s *Shipper) Carry(ctx context.Context, take bool) ([]*cloudmlv1.LogBatch, error) {
	s.mu.Lock()
	if s.held && !take {
		s.mu.Unlock()
		s.release()
		return nil, s.wait(ctx)
	}
	if s.held {
		s.held, s.taken = false, true
		s.holdTimer.Stop()
		out := s.take(s.pending) // all of them: Close held at most MaxCallBytes
		s.mu.Unlock()
		s.wake() // the sender stops
		return out, nil
	}
	s.mu.Unlock()
	return nil, s.wait(ctx)
}

// Done is closed when the sender stops: everything was acknowledged after
// Close, the coordinator rejected the attempt, or the ctx ended.
func (s *Shipper) Done() <-chan struct{} { return s.done }

// Err returns why the sender stopped early, if it did.
func (s *Shipper) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Tail returns the last non-empty line of a stream (without its newline),
// cut to 512 bytes: the hint for a failure message.
func (s *Shipper) Tail(stream cloudmlv1.LogStream) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tails[stream]
}

func (s *Shipper) setTail(stream cloudmlv1.LogStream, line []byte) {
	if len(line) > 512 {
		line = line[:512]
	}
	s.mu.Lock()
	s.tails[stream] = string(line)
	s.mu.Unlock()
}
