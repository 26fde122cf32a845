// Package local is the coordinator's embedded node provider: it starts
// cloudml-agent processes on this machine, one per node, pointed at the
// coordinator with the bootstrap token, and forwards their output into the
// coordinator's log. It is what `coordinator serve --provider local` and
// `make demo` use, so a sweep runs with no cloud account.
//
// An agent that exits is started again (Supervise), as systemd restarts it
// on a droplet. Children are stopped with SIGTERM, then SIGKILL after
// StopTimeout, and are started with a parent-death signal so that even a
// crashed coordinator leaves none behind.
package local
