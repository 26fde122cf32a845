package coordinator

import (
	"time"
)

// Recovery from a failed commit (commit.go): memory may hold changes the
// store does not, which nobody was shown. The coordinator refuses what
// would show them (every locked call fails while commits fail), waits for
// the store to take a write again, then replaces memory with what the
// store holds, ends every session (agents reconnect and report what they
// run, as after a restart) and commits again. No restart is needed.

// Probe backoff while the store fails.
const (
	recoverBackoffMin = 50 * time.Millisecond
	recoverBackoffMax = time.Second
)

// storeFailed starts the recovery unless one runs already.
func (c *Coordinator) storeFailed(err error) {
	if !c.recovering.TryLock() {
		return
	}
	go func() {
		defer c.recovering.Unlock()
		c.recoverStore(err)
	}()
}

// recoverStore waits until the store works, then reloads memory from it.
func (c *Coordinator) recoverStore(cause error) {
	c.log.Error("the store failed; refusing changes until it works again", "error", cause)
	for wait := recoverBackoffMin; ; wait = min(wait*2, recoverBackoffMax) {
		err := c.store.Probe()
		if err == nil {
			break
		}
		c.log.Warn("the store still fails", "error", err, "retry_in", wait)
		select {
		case <-c.q.done: // closing
			return
		case <-time.After(wait):
		}
	}
	snap, err := c.store.Load()
	if err != nil {
		c.log.Error("reload state after a store failure", "error", err)
		c.storeFailedAgain(err)
		return
	}
	c.mu.Lock()
	c.disp.EndAll("the coordinator's store failed; reconnect", time.Now())
	err = c.fromSnapshot(snap)
	if err == nil {
		c.swarm = swarmState{}
		c.q.resume()
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Error("reload state after a store failure", "error", err)
		c.storeFailedAgain(err)
		return
	}
	c.log.Info("the store works again; state reloaded", "nodes", len(snap.Nodes), "jobs", len(snap.Jobs))
	c.poke()
}

// storeFailedAgain retries the recovery after a failed reload.
func (c *Coordinator) storeFailedAgain(err error) {
	go func() {
		select {
		case <-c.q.done:
		case <-time.After(recoverBackoffMax):
			c.storeFailed(err)
		}
	}()
}
