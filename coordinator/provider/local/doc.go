// Package local is the coordinator's embedded node provider
// (provider.Provider "local"): each node it creates is a cloudml-agent
// process on this machine, pointed at the coordinator with a fresh join
// token, whose output goes into the coordinator's log. It is what
// `coordinator serve --provider local` and `make demo` use, so a sweep runs
// with no cloud account.
//
// Agents is the part it shares with the netns provider: one supervised
// process per node. An agent that exits is started again (Supervise), as
// systemd restarts it on a droplet. Children are stopped with SIGTERM, then
// SIGKILL after StopTimeout, and are started with a parent-death signal so
// that even a crashed coordinator leaves none behind.
package local
