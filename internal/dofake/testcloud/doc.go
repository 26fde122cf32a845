// Package testcloud is a DigitalOcean stand-in on one machine for
// CloudML's real binaries: internal/dofake's API server whose droplets
// are internal/dofake/netnsboot's network-namespace nodes, their metadata
// service at 169.254.169.254 as on DigitalOcean, and, when asked, a
// fake-gcs-server bucket that the droplets' agents reach (the agents find
// it through STORAGE_EMULATOR_HOST in their units' environment, as a
// droplet image made for a cluster would set its bucket credentials).
//
//	c, err := testcloud.Start(ctx, testcloud.Config{Nodes: 2, Bucket: "runs"})
//	defer c.Close()
//	// coordinator serve --provider digitalocean --do-api-url c.APIURL()
//	//   --listen c.HostAddr():7443 --swarm-peers c.Subnet()
//	//   with DIGITALOCEAN_TOKEN=c.Token(), STORAGE_EMULATOR_HOST=c.StorageEmulatorHost()
//
// The coordinator (and its agent download, on the next port) must listen
// on HostAddr, the bridge's address: the only address of this machine
// the droplets reach, as a coordinator on the droplets' VPC would be.
//
// Close deletes what is left: it halts every droplet still alive, tears
// the pool down and stops the bucket, and returns a Summary of the
// droplets created, deleted and left. The command
// internal/dofake/cmd/dofake serves one for `make demo-do`; test/do runs
// that command, and bench uses this package in its own process.
package testcloud
