// Package store is the coordinator's durable state, so a restarted
// coordinator carries on where it stopped: one bbolt file (state.db) holding
// nodes, jobs, tasks and attempts, and one append-only log file per job,
// logs/<job>/attempts.log, holding the records of all its attempts (see
// pack).
//
// Records are small Go structs encoded as JSON. JSON keeps the file readable
// with bbolt's own tools when debugging, lets a field be added without a
// migration, and needs no generated code for types that never cross the wire.
// The one wire type in a record, the JobSpec, is kept as proto bytes so that
// it round-trips exactly. Metrics encode non-finite numbers (NaN, ±Inf, which
// a diverged run reports) as the strings "NaN", "Infinity" and "-Infinity"
// (internal/metricjson), since JSON has no literal for them.
//
// Buckets and keys:
//
//	nodes     node id                         → Node (JSON)
//	jobs      job id                          → Job (JSON)
//	tasks     job 0x00 task(4B BE)             → Task (JSON)
//	attempts  job 0x00 task(4B BE) attempt(4B) → Attempt (JSON)
//	tokens    token id                        → JoinToken (JSON)
//	credentials name                          → Credential (JSON)
//	machines  provider id                     → Machine (JSON)
//	machine_requests request id               → MachineRequest (JSON)
//	pools     pool name                       → Pool (JSON)
//
// Machines, their create requests and pools are the fleet's book (see
// provider.Fleet): a request is written before the provider is asked to
// create, a machine before it is asked to delete, so a coordinator that
// dies in between finds out on restart what it may have made. LoadFleet
// reads them apart from Load.
// A NUL byte ends the job id in composite keys, so one job's prefix never
// matches another job whose id merely starts with it. Every event is one
// transaction (each bbolt commit fsyncs): Save writes any mix of records at
// once, and frequent small writes (heartbeats) go through db.Batch.
//
// Logs live outside bbolt, whose page allocation made appends cost about
// 3 ms per MiB. Each attempt's batches go to logs/<job>/<task>-<attempt>.log
// as records of seq (8B BE), stream (1B), length (4B BE) and data, with
// seqs 1, 2, 3… and no gaps. WriteLogs writes a call's records with one
// write, and SyncLogs fsyncs before anything is acknowledged. In memory each attempt keeps
// its acked seq, file size and the offset of every record, so ReadLogs reads
// a range with one ReadAt. An attempt is loaded on first use (Load touches
// every attempt to report its acked seq): its file is scanned, and a torn
// tail left by a crash (a partial or inconsistent last record) is cut off.
// Files are opened per call, so no handles stay open between calls.
//
// With Options.MaxLogBytes a file stops growing at that size: the batch
// that does not fit is stored cut to its whole lines that do, plus a note,
// with the high bit of its stream byte set. A file whose last record has
// it is capped: later batches of the attempt are acknowledged and dropped.
//
// A task has a record only once it left its first state (pending, with its
// sweep's parameters); the coordinator derives the others from the job's
// spec when it loads, so submitting a large sweep writes one job record.
package store
