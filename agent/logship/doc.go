// Package logship ships one attempt's stdout and stderr to the coordinator
// as numbered batches of whole lines (AgentService.PublishLogs). Batches
// stay in memory until acknowledged and are resent from the acknowledged
// sequence after an error or a reconnect, so the coordinator stores every
// line exactly once. When too much is unacknowledged the readers block
// (backpressure) rather than drop output.
package logship
