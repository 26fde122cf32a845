// Package container runs the tasks of container jobs as Docker Swarm
// services. The swarm manager's agent creates and removes the services
// (Manager); every agent with Docker finds the task containers that swarm
// starts on its own node and hands them to the attempt machinery (Node),
// which reports them, ships their logs and uploads their results exactly
// as it does for the process runtime.
//
// # Service layout
//
// One service per attempt, named cml-<job>-<task>-<attempt> (at most 63
// characters; a long or unusual job id is cut and suffixed with a hash of
// it). Mode replicated with 1 replica, restart condition none, no published
// ports. The service and its container spec carry the labels cloudml.job,
// cloudml.task, cloudml.attempt and cloudml.assignment, the base64 of the
// marshalled Assignment, so the agent that finds the container on its node
// knows the command, params, output URL and timeout without asking anyone.
//
// Why not one service per job: CloudML owns task identity. In jobs mode
// (replicated-job) Engine 20.10 gives {{.Task.Slot}} values that are not
// 0..N-1 (measured: 1, 2 and a node id for 3 replicas) and may run a task
// again; a replicated service with N replicas restarts or reschedules
// tasks by its own rules. With one single-replica, never-restarted service
// per attempt, the task index and attempt come from the labels, a retry is
// a new attempt (a new service) decided by the coordinator, and removing
// the service is the cancel.
//
// Resources: resources.cpus (0 means 1) becomes the NanoCPUs reservation
// and limit; memory_bytes the memory reservation and limit, so the swarm
// places no more tasks on a node than it has room for and the rest wait
// pending.
//
// Container layout:
//
//	/cloudml/code          the staged code, read-only; the working directory
//	/cloudml/data/<name>   each staged data source, read-only
//	/cloudml/output        the named local volume cml-<job>-<task>-<attempt>
//
// with CLOUDML_OUTPUT_DIR, CLOUDML_DATA_DIR (when there is data),
// CLOUDML_TASK_INDEX, CLOUDML_TASK_COUNT, CLOUDML_ATTEMPT, CLOUDML_JOB_ID,
// one CLOUDML_PARAM_<NAME> per parameter, the assignment's env, and
// HOME=/tmp. Nothing else of the node's reaches the container: none of the
// agent's environment, and no mount but these (the agent's secrets dir and
// the rest of its work dir stay outside).
//
// # Where the code comes from
//
// The code and data are bind mounts from the node's own staging cache.
// Before the coordinator hands the manager an attempt, every node has run
// StageJob: its agent stages the sources into its content-addressed cache
// and links them at <WorkDir>/jobs/<job>/code and
// <WorkDir>/jobs/<job>/data/<name>. The agent also keeps the link
// <SwarmRoot>/<swarm node id> → <WorkDir>. The service's bind sources are
//
//	<SwarmRoot>/{{.Node.ID}}/jobs/<job>/code
//	<SwarmRoot>/{{.Node.ID}}/jobs/<job>/data/<name>
//
// and swarm expands {{.Node.ID}} on the node that runs the task (verified on
// Engine 20.10.24), so each container sees its own node's copy. The links are
// per job rather than per cache key because the manager cannot know a
// prefix source's key (a hash of the bucket listing) without listing the
// bucket itself, and a listing taken later than the nodes' could disagree
// with theirs; the per-job link is whatever that node staged. A node that
// did not stage the job refuses the task ("bind source path does not
// exist"), which the manager reports as a failed attempt.
//
// # Images
//
// Before a node reports a job staged, Images.Ensure makes its Docker hold
// the job's image: its own copy (when the id matches the coordinator's
// pinned copy, if any), else the coordinator's, streamed from FetchImage
// straight into docker load through a pipe, else a registry pull. The node
// loads by id: the coordinator's header must announce the pinned id, every
// image docker load reports must be that id, and the job's name is then
// pointed at it; any mismatch (or a registry or local copy with another id
// than the pinned one) fails the staging. Stagings
// of one image on a node share one fetch. Images.Export answers the
// coordinator's ExportImage with docker save in 1 MiB chunks over
// UploadImage, so an image that only the swarm manager has reaches the
// other nodes without a registry.
//
// # Failures before the container starts
//
// The manager polls the tasks of the services it created until their
// container starts (bounded by ManagerConfig.Watch). A task rejected by its
// node (an image no node has and no registry serves, a refused mount) or
// whose container could not start is reported FAILED with exit code -1 and
// a message a user can act on, and its service is removed. A task pending
// because every node is busy just waits.
package container
