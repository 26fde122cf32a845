// Package logship ships one attempt's stdout and stderr to the coordinator
// as numbered batches of whole lines. It keeps one AgentService.StreamLogs
// stream open per attempt and sends each batch as soon as it is closed,
// without waiting for the acknowledgement of the one before; a coordinator
// without StreamLogs gets one PublishLogs call at a time instead. Batches
// stay in memory until acknowledged and are resent from the acknowledged
// sequence after an error or a reconnect, so the coordinator stores every
// line exactly once. When too much is unacknowledged the readers block
// (backpressure) rather than drop output.
//
// No stream opens before there is output to ship, and with CarryBytes an
// attempt whose output is all still on the node when it ends hands it to
// its end report instead (Close, then Carry): one call where a stream
// and a report were two. Output not taken within CarryWait is shipped as
// usual.
package logship
