// Package dropletmeta reads what a DigitalOcean droplet's metadata service
// (http://169.254.169.254/metadata/v1/, reachable only from the droplet
// itself) says about the droplet the agent runs on: its id, hostname and
// addresses. The agent reports the id when it registers
// (RegisterRequest.provider_id) so that the coordinator can check, against
// the DigitalOcean API, that the machine asking for a node certificate is
// a droplet of its cluster; the private address is what the node then
// advertises to its swarm peers.
//
// The service has no signed identity document: the id is a claim the
// coordinator verifies, not a proof. The lookup is off unless the agent is
// given the service's base URL (--metadata-url, which the coordinator's
// user-data sets); tests point it at a local server.
package dropletmeta
