// Package client is the Go API of a CloudML coordinator, the way nomad/api
// and Docker's client package serve their command lines: typed calls for
// everything the coordinator's JobService and ClusterService offer, plus the
// work a user's machine does around them. Submit packs local code and data
// and uploads them by content digest to the coordinator's bucket, and
// pushes the job's image from the local Docker when the coordinator lacks
// it; Logs follows a job's output across coordinator restarts, printing
// nothing twice; DownloadResults fetches every task's results; WaitStaged
// follows each node's staging of a container job; Scale, DeleteMachines
// and WatchMachines make and remove the provider's machines and follow
// them up and down.
//
// cloudml-client (internal/cli) is built on it, and so can a dashboard or a
// notebook be. The package prints nothing: long transfers report to a
// Progress the caller supplies (nil: none), and what a call did comes back
// in its result. Errors from the coordinator keep their gRPC status, so
// status.Code(err) tells NotFound from Unavailable.
//
// A Client is made from a Config:
//
//	cfg := client.DefaultConfig()
//	cfg.Address = "coordinator.example:7070"
//	c, err := client.New(cfg)
//	...
//	defer c.Close()
//
// The connection is plaintext unless Config.TransportCredentials is set.
package client
