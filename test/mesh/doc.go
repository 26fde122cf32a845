// Package mesh tests the in-process coordinator with real agents over
// bufconn: the whole protocol (register, session, assignments, reports,
// numbered logs, results) in one process, with real task processes and a
// real file:// bucket, fast enough for every `go test`.
package mesh
