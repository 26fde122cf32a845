// Package agent is cloudml-agent, the node side of the CloudML mesh. It
// dials the coordinator (never the other way round), registers once with the
// cluster's bootstrap token and keeps the node identity it gets in its work
// directory, then holds a Session stream open: assignments and cancels come
// down it, and the agent answers with ReportTask, PublishLogs and Heartbeat
// calls. Each attempt runs in its own goroutine (package agent/attempt),
// stages code and data through a content-addressed cache (agent/stage),
// runs through a Runtime (agent/runtime) and ships its logs with sequence
// numbers (agent/logship). The agent never imports the coordinator; the two
// meet only in proto/cloudml/v1.
package agent
