package client

import (
	"io"
	"sync"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Kind says what a transfer moves.
type Kind int

// The kinds of transfer.
const (
	// KindUpload is local code or data going to the coordinator's bucket.
	KindUpload Kind = iota + 1
	// KindImagePush is an image going from the local Docker to the
	// coordinator.
	KindImagePush
	// KindStage is a node staging a container job's code, data and image.
	KindStage
	// KindDownload is a task's results coming from the bucket.
	KindDownload
)

// String is the kind's name ("upload").
func (k Kind) String() string {
	switch k {
	case KindUpload:
		return "upload"
	case KindImagePush:
		return "push"
	case KindStage:
		return "stage"
	case KindDownload:
		return "download"
	}
	return "transfer"
}

// Transfer describes one transfer as it starts.
type Transfer struct {
	// Kind is what moves.
	Kind Kind
	// Name is what it is: the local path (upload), the image reference
	// (push), the node id (stage) or "task N" (download).
	Name string
	// Node is the node that stages, for KindStage (nil if the coordinator
	// did not list it).
	Node *cloudmlv1.Node
	// Total is its size in bytes, 0 when not known. An image push's total
	// is the image's size, a little less than its archive's.
	Total int64
}

// Progress is told about transfers as they happen: cloudml-client draws
// bars, a dashboard might send events. Its methods may be called from
// several goroutines at once.
type Progress interface {
	// Start begins a transfer and returns what follows it.
	Start(t Transfer) Tracker
}

// Tracker follows one transfer. Each Tracker a Client starts gets exactly
// one Done, after its last Update.
type Tracker interface {
	// Update reports the bytes moved so far and the total (0: not known).
	Update(current, total int64)
	// Done ends the transfer; err is nil when it completed.
	Done(err error)
}

// nopTracker is what a nil Progress gives.
type nopTracker struct{}

func (nopTracker) Update(int64, int64) {}
func (nopTracker) Done(error)          {}

// start starts t on p, or on nothing when p is nil.
func start(p Progress, t Transfer) Tracker {
	if p == nil {
		return nopTracker{}
	}
	return p.Start(t)
}

// updateEvery spaces the updates a reader sends, so a Progress sees a few
// per second whatever the read size.
const updateEvery = 100 * time.Millisecond

// countingReader reports the bytes read through it to a Tracker.
type countingReader struct {
	r     io.Reader
	t     Tracker
	total int64

	mu   sync.Mutex // protects n and last
	n    int64
	last time.Time
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.add(int64(n))
	return n, err
}

func (c *countingReader) add(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += n
	if now := time.Now(); now.Sub(c.last) >= updateEvery {
		c.last = now
		c.t.Update(c.n, c.total)
	}
}

// flush sends the final count.
func (c *countingReader) flush() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Update(c.n, c.total)
	return c.n
}
