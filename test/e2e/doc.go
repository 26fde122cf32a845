// Package e2e tests CloudML as a user runs it: the real coordinator, agent
// and client binaries as separate processes talking gRPC on loopback, a real
// bucket (file:// or fake-gcs-server through the real GCS client), and real
// Octave. It also holds the rule that agent/ and coordinator/ never import
// each other.
package e2e
