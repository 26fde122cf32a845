// Package do is the DigitalOcean path end to end with the real binaries
// and no DigitalOcean account: the dofake command (the API test server
// whose droplets are network-namespace nodes booting their user-data, and
// a fake GCS bucket they reach), a coordinator with --provider
// digitalocean, and cloudml-client's cluster up, the linreg Octave sweep,
// cluster down and cluster gc. It needs root, docker.io, iproute2,
// iptables, curl and the cloudml/octave:7 image in the host's Docker;
// without them it skips, and fails under CI=true.
package do
