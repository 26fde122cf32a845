package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/jobspec"
)

// requestOverhead is what a request may hold beyond its bounded payload
// (a spec, a call's log data): ids, refs and framing.
const requestOverhead = 64 << 10

// Limits bound every input of the coordinator. The defaults are far above
// what a real user sends and far below what would hurt the coordinator or
// a node; every input is checked before anything of it is stored, and a
// refusal names the limit, its value and, where it is configurable, the
// flag that raises it.
type Limits struct {
	// Spec bounds job specs; default jobspec.DefaultLimits(), which every
	// client checks as well, so these can be lowered but not raised.
	// Together they keep a job's largest Assignment (its spec, one task's
	// parameters, the nodes to avoid) far below grpcopt.MaxMsgBytes, which
	// every agent receives.
	Spec jobspec.Limits
	// RequestBytes bounds one gRPC message the coordinator receives (the
	// server's MaxRecvMsgSize); default 8 MiB. It must hold the largest
	// spec and the largest log call with room to spare. An image is pushed
	// in chunks, each a message.
	RequestBytes int
	// LogCallBytes bounds the log data of one PublishLogs call or one
	// StreamLogs message; default 4 MiB (an agent sends at most 2 MiB).
	LogCallBytes int
	// AttemptLogBytes bounds what the coordinator keeps of one attempt's
	// logs, records and their 13-byte headers together; default 1 GiB
	// (flag --max-log-bytes). Beyond it the coordinator keeps the whole
	// lines that fit, adds one marker line saying the rest was dropped, and
	// acknowledges the attempt's later batches without storing them, so the
	// agent ships on and the task ends normally.
	AttemptLogBytes int64
	// ImageBytes bounds one image archive a client pushes or a node
	// uploads; default 16 GiB (flag --max-image-bytes). A larger one is
	// refused, and its partial copy removed, once that many bytes arrived
	// (at once when the push's header says its size).
	ImageBytes int64
	// Metrics bounds the metrics kept per attempt and MetricNameBytes the
	// length of a metric's name; defaults 1,000 and 256. A node's final
	// report is never refused for them (its agent would send it again for
	// ever): the first metrics by name with names that fit are kept, and
	// the attempt's message says how many were dropped.
	Metrics         int
	MetricNameBytes int
	// MessageBytes bounds the message kept with an attempt's end; default
	// 4 KiB. A longer one is cut.
	MessageBytes int
	// ContainerAssignmentBytes bounds the Assignment of one task of a
	// container job; default 512 KiB, at most 640 KiB. Its swarm service
	// carries it whole in a label (base64) and its env again, and swarmkit
	// refuses a service over 1.5 MiB (its raft transaction limit).
	ContainerAssignmentBytes int
}

// maxContainerAssignment keeps a service (the assignment in base64 and its
// env again) under swarmkit's 1.5 MiB.
const maxContainerAssignment = 640 << 10

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		Spec:            jobspec.DefaultLimits(),
		RequestBytes:    8 << 20,
		LogCallBytes:    4 << 20,
		AttemptLogBytes: 1 << 30,
		ImageBytes:      16 << 30,
		Metrics:         1000,
		MetricNameBytes: 256,
		MessageBytes:    4 << 10,

		ContainerAssignmentBytes: 512 << 10,
	}
}

// Validate fills zero limits with their defaults and checks that they fit
// together.
func (l *Limits) Validate() error {
	d := DefaultLimits()
	if err := l.Spec.Validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if l.RequestBytes == 0 {
		l.RequestBytes = d.RequestBytes
	}
	if l.LogCallBytes == 0 {
		l.LogCallBytes = d.LogCallBytes
	}
	if l.AttemptLogBytes == 0 {
		l.AttemptLogBytes = d.AttemptLogBytes
	}
	if l.ImageBytes == 0 {
		l.ImageBytes = d.ImageBytes
	}
	if l.Metrics == 0 {
		l.Metrics = d.Metrics
	}
	if l.MetricNameBytes == 0 {
		l.MetricNameBytes = d.MetricNameBytes
	}
	if l.MessageBytes == 0 {
		l.MessageBytes = d.MessageBytes
	}
	if l.ContainerAssignmentBytes == 0 {
		l.ContainerAssignmentBytes = d.ContainerAssignmentBytes
	}
	switch {
	case l.RequestBytes < 0 || l.RequestBytes > grpcopt.MaxMsgBytes:
		return fmt.Errorf("limits: request bytes %d: want 1..%d", l.RequestBytes, grpcopt.MaxMsgBytes)
	case l.RequestBytes < l.Spec.SpecBytes+requestOverhead:
		return fmt.Errorf("limits: request bytes %d cannot hold a spec of %d bytes (want at least %d)", l.RequestBytes, l.Spec.SpecBytes, l.Spec.SpecBytes+requestOverhead)
	case l.LogCallBytes < 2<<20:
		return fmt.Errorf("limits: log call bytes %d is below the 2 MiB an agent may send in one call", l.LogCallBytes)
	case l.RequestBytes < l.LogCallBytes+requestOverhead:
		return fmt.Errorf("limits: request bytes %d cannot hold a log call of %d bytes (want at least %d)", l.RequestBytes, l.LogCallBytes, l.LogCallBytes+requestOverhead)
	case l.AttemptLogBytes < 0:
		return fmt.Errorf("limits: attempt log bytes %d is negative", l.AttemptLogBytes)
	case l.ImageBytes < 0:
		return fmt.Errorf("limits: image bytes %d is negative", l.ImageBytes)
	case l.ContainerAssignmentBytes < 0 || l.ContainerAssignmentBytes > maxContainerAssignment:
		return fmt.Errorf("limits: container assignment bytes %d: want 1..%d (a swarm service holds it twice within 1.5 MiB)", l.ContainerAssignmentBytes, maxContainerAssignment)
	case l.Metrics < 0 || l.MetricNameBytes < 0 || l.MessageBytes < 0:
		return fmt.Errorf("limits: metrics %d, metric name bytes %d and message bytes %d must not be negative", l.Metrics, l.MetricNameBytes, l.MessageBytes)
	}
	return nil
}

// boundReport returns what is kept of a final report's metrics and message
// within the limits, the message saying what was dropped.
func (l *Limits) boundReport(metrics map[string]float64, message string) (map[string]float64, string) {
	var kept map[string]float64
	dropped := 0
	if len(metrics) > 0 {
		kept = make(map[string]float64, min(len(metrics), l.Metrics))
		names := slices.Sorted(maps.Keys(metrics))
		for _, name := range names {
			if len(name) > l.MetricNameBytes || len(kept) == l.Metrics {
				dropped++
				continue
			}
			kept[name] = metrics[name]
		}
	}
	if dropped > 0 {
		note := fmt.Sprintf("%d of %d metrics dropped (at most %d, names of at most %d bytes)", dropped, len(metrics), l.Metrics, l.MetricNameBytes)
		if message == "" {
			message = note
		} else {
			message = note + "; " + message
		}
	}
	if len(message) > l.MessageBytes {
		cut := l.MessageBytes - len("...")
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut--
		}
		message = message[:max(cut, 0)] + "..."
	}
	return kept, message
}
