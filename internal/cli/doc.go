// Package cli is cloudml-client: the user's commands (submit, list, status,
// logs, cancel, results, cluster nodes) over the coordinator's JobService and
// ClusterService. It prints human tables by default and JSON with -o json,
// and returns exit codes scripts can branch on (see ExitOK and friends).
package cli
