package store

import (
	"time"

	"github.com/cloudml/cloudml/internal/metricjson"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Node is a registered machine.
type Node struct {
	// ID is the coordinator-assigned id ("node-1").
	ID string `json:"id"`
	// Hostname, Address, Slots, MemoryBytes and Runtime are what the node reported.
	Hostname    string `json:"hostname"`
	Address     string `json:"address"`
	Slots       int32  `json:"slots"`
	MemoryBytes int64  `json:"memory_bytes"`
	Runtime     string `json:"runtime"`
	// ProviderID is the machine's id at its provider (a droplet id) as it
	// reported it at registration, checked by the coordinator's
	// VerifyNode hook; empty when it reported none.
	ProviderID string `json:"provider_id,omitempty"`
	// CertSerial and PrevCertSerial are the hex serials of the node's
	// current certificate and the one it renewed last; a node certificate
	// with any other serial is refused.
	CertSerial     string `json:"cert_serial"`
	PrevCertSerial string `json:"prev_cert_serial,omitempty"`
	// CertExpireTime is when the current certificate expires.
	CertExpireTime time.Time `json:"cert_expire_time,omitzero"`
	// MaxSlots and MaxMemoryBytes cap what the node may claim (from its join
	// token, or the coordinator's defaults).
	MaxSlots       int32 `json:"max_slots,omitempty"`
	MaxMemoryBytes int64 `json:"max_memory_bytes,omitempty"`
	// Token is the id of the join token it registered with.
	Token string `json:"token,omitempty"`
	// KeySHA256 is the hex SHA-256 of the public key it registered with: a
	// Register repeated with the same token and key (its answer was lost)
	// gets this node again.
	KeySHA256 string `json:"key_sha256,omitempty"`
	// Removed is set by RemoveNode: the node's certificates are refused and
	// it is kept out.
	Removed bool `json:"removed,omitempty"`
	// State is READY or DOWN.
	State cloudmlv1.NodeState `json:"state"`
	// LastHeartbeat is when the node was last heard from (persisted lazily).
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// RegisterTime is when the node registered.
	RegisterTime time.Time `json:"register_time"`
	// SwarmNodeID and SwarmRole ("manager", "worker") are the node's Docker
	// Swarm membership, once it joined.
	SwarmNodeID string `json:"swarm_node_id,omitempty"`
	SwarmRole   string `json:"swarm_role,omitempty"`
	// Message says why the node is down or outside the swarm.
	Message string `json:"message,omitempty"`
}

// Job is a submitted job.
type Job struct {
	// ID is "name-xxxxxx".
	ID string `json:"id"`
	// Spec is the JobSpec as proto bytes.
	Spec []byte `json:"spec"`
	// State is the derived job state, stored so listings need no tasks.
	State cloudmlv1.JobState `json:"state"`
	// Output is the resolved output bucket URL.
	Output string `json:"output"`
	// TaskCount is the number of tasks.
	TaskCount int32 `json:"task_count"`
	// Owner is the credential that submitted the job: only it sees the
	// job's env values.
	Owner string `json:"owner,omitempty"`
	// Cancelled is set once the user cancelled the job.
	Cancelled bool `json:"cancelled,omitempty"`
	// CreateTime, StartTime and EndTime bound the job.
	CreateTime time.Time `json:"create_time"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
}

// Task is one element of a job's sweep.
type Task struct {
	// JobID and Index name the task.
	JobID string `json:"job_id"`
	Index int32  `json:"index"`
	// Params are the swept values.
	Params map[string]string `json:"params,omitempty"`
	// State is the task's state.
	State cloudmlv1.TaskState `json:"state"`
	// Attempt is the number of the latest attempt, 0 before the first.
	Attempt int32 `json:"attempt"`
	// Failures counts attempts that failed (lost attempts do not count).
	Failures int32 `json:"failures"`
	// Reason says why the task is pending or why it failed.
	Reason string `json:"reason,omitempty"`
	// Note is an event's explanation (a failed or lost attempt) that stays
	// in front of the scheduler's reason while the task waits.
	Note string `json:"note,omitempty"`
}

// Attempt is one run of a task on a node.
type Attempt struct {
	// JobID, Task and Attempt name the attempt.
	JobID   string `json:"job_id"`
	Task    int32  `json:"task"`
	Attempt int32  `json:"attempt"`
	// NodeID is the node it was assigned to. A swarm attempt has none until
	// the node swarm placed it on claims it with its first report.
	NodeID string `json:"node_id"`
	// Swarm marks an attempt run as a swarm service; Manager is the node
	// whose agent created the service.
	Swarm   bool   `json:"swarm,omitempty"`
	Manager string `json:"manager,omitempty"`
	// Slots is what the attempt reserves on its node.
	Slots int32 `json:"slots"`
	// State is ASSIGNED, STAGING, RUNNING or a terminal state.
	State cloudmlv1.TaskState `json:"state"`
	// Lost is set when the node went away during the attempt.
	Lost bool `json:"lost,omitempty"`
	// ExitCode, Message, Metrics and ResultsURL come from the final report.
	ExitCode   int32   `json:"exit_code"`
	Message    string  `json:"message,omitempty"`
	Metrics    Metrics `json:"metrics,omitempty"`
	ResultsURL string  `json:"results_url,omitempty"`
	// AssignTime, StartTime and EndTime bound the attempt.
	AssignTime time.Time `json:"assign_time"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
}

// Active reports whether the attempt holds a slot on its node.
func (a *Attempt) Active() bool {
	return ActiveState(a.State)
}

// ActiveState reports whether s is ASSIGNED, STAGING or RUNNING.
func ActiveState(s cloudmlv1.TaskState) bool {
	switch s {
	case cloudmlv1.TaskState_TASK_STATE_ASSIGNED, cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING:
		return true
	}
	return false
}

// Metrics is a metric map whose JSON form keeps NaN and ±Inf as strings
// (metricjson.Map).
type Metrics = metricjson.Map
