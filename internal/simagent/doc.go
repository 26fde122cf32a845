// Package simagent runs many simulated agents in one process, each
// speaking the real agent protocol (proto/cloudml/v1 AgentService) over its
// own gRPC connection: real TCP, real TLS. It exists to load a coordinator
// the way a large cluster would (issue 11, the control plane at 1,000
// nodes) without a thousand machines.
//
// Each simulated node does what agent/ does, minus running anything: it
// registers with a join token and a CSR (internal/pki) on a connection that
// pins the coordinator's CA to the token's fingerprint, then dials again
// with the issued node certificate (mutual TLS), opens
// AgentService.Session, heartbeats every period the SessionStarted gives,
// and for every Assignment reports RUNNING (STAGING first only with
// Config.ReportStaging: the agent reports it once staging has taken 50 ms,
// and a simulated node stages nothing), then SUCCEEDED
// with last_log_seq 1 carrying one log line (batch seq 1) as the agent
// sends a short attempt's output when SessionStarted.report_logs offers
// it; without that offer (or with Config.SeparateLogs) the line goes first
// in a PublishLogs call, resent until acknowledged. An attempt is run at most once per node,
// however often it is sent; a broken session is opened again with the
// attempts still in flight, as the real agent does.
//
// The real agent ships longer output over StreamLogs; a simulated node
// uses the unary PublishLogs, which costs the coordinator the same store
// append per batch.
//
// A Recorder collects what a benchmark needs: per-call latencies with the
// time of each call, how often each task index was run (a task run twice
// is a lost or duplicated attempt), when each assignment arrived, and
// errors by call and gRPC code.
package simagent
