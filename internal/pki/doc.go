// Package pki is CloudML's trust layer: the coordinator's certificate
// authority, the certificates it issues (its own server certificate, node
// certificates, client credentials), the TLS 1.3 configurations every gRPC
// connection uses, and join tokens that pin the CA.
//
// The model is Docker Swarm's: the coordinator is its own CA; a join token
// carries the CA's fingerprint and a secret, so an agent checks the
// coordinator before it sends anything; the agent trades the token and a
// certificate signing request for a short-lived node certificate and renews
// it over its authenticated connection. A certificate says who its holder
// is (its common name) and what it may do (its role, in the organisational
// unit); the coordinator reads both from the peer certificate of every call,
// never from a request field.
//
// Every private key is generated where it is used and never leaves that
// machine: agents and clients send a CSR, not a key.
package pki
