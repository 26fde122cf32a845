// Package cloudmlv1 is the Go code generated from the CloudML protocol in
// this directory: agent.proto (AgentService, which node agents dial),
// client.proto (JobService and ClusterService, which clients call) and
// job.proto (the job, task and result types both share). The .proto files
// document every service, RPC and field; this file is the only one here not
// written by `make generate`.
package cloudmlv1
