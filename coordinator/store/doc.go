// Package store is the coordinator's durable state: one bbolt file holding
// nodes, jobs, tasks, attempts, log acknowledgements and log batches, so a
// restarted coordinator carries on where it stopped.
//
// Records are small Go structs encoded as JSON. JSON keeps the file readable
// with bbolt's own tools when debugging, lets a field be added without a
// migration, and needs no generated code for types that never cross the wire.
// The one wire type in a record, the JobSpec, is kept as proto bytes so that
// it round-trips exactly. Metrics encode non-finite numbers (NaN, ±Inf, which
// Octave produces) as strings, since JSON has no literal for them.
//
// Buckets and keys:
//
//	nodes     node id                         → Node (JSON)
//	jobs      job id                          → Job (JSON)
//	tasks     job 0x00 task(4B BE)             → Task (JSON)
//	attempts  job 0x00 task(4B BE) attempt(4B) → Attempt (JSON)
//	acks      job 0x00 task attempt            → acked log seq (8B BE)
//	logs      job 0x00 task attempt seq(8B BE) → stream (1B) + data
//
// A NUL byte ends the job id in composite keys, so one job's prefix never
// matches another job whose id merely starts with it. The acknowledged log
// sequence lives in its own bucket, written only by AppendLogs, so storing an
// attempt's state never races with storing its logs.
//
// Every event is one transaction (each bbolt commit fsyncs): Save writes any
// mix of records at once, AppendLogs stores a run of batches and its ack
// together, and frequent small writes (heartbeats) go through db.Batch.
package store
