// Package attempt carries out one assignment on the node: stage the code
// and data, lay out the working directory, run the command through the
// runtime while shipping its logs, then upload the outputs, the logs and a
// manifest to the output bucket and report the end to the coordinator.
// Each attempt runs in its own goroutine; reports are retried until the
// coordinator acknowledges them.
package attempt
