// Package metricjson is the JSON form of a task's metrics, shared by the
// agent (reading metrics.json, writing manifest.json) and the coordinator's
// store, so that a run which diverged can say so end to end.
//
// JSON has no literal for NaN or infinity. A value is a JSON number, or one
// of the strings "NaN", "Infinity" and "-Infinity" (the spelling of the
// protobuf JSON mapping for double, so GetResults as JSON shows the same
// words), or null, which reads as NaN: Octave's jsonencode writes null for
// NaN and for ±Inf alike, so null can only mean "not a number". Writers
// here always use the strings, never null.
package metricjson
