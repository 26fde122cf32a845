package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stagingJobs answers GetJob with the next of its jobs (the last one
// again once they run out) and ListNodes with two nodes.
type stagingJobs struct {
	cloudmlv1.UnimplementedJobServiceServer
	cloudmlv1.UnimplementedClusterServiceServer
	mu   sync.Mutex
	jobs []*cloudmlv1.Job
}

func (s *stagingJobs) GetJob(context.Context, *cloudmlv1.GetJobRequest) (*cloudmlv1.GetJobResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[0]
	if len(s.jobs) > 1 {
		s.jobs = s.jobs[1:]
	}
	return &cloudmlv1.GetJobResponse{Job: j}, nil
}

func (s *stagingJobs) ListNodes(context.Context, *cloudmlv1.ListNodesRequest) (*cloudmlv1.ListNodesResponse, error) {
	return &cloudmlv1.ListNodesResponse{Nodes: []*cloudmlv1.Node{{Id: "node-1", Hostname: "a"}, {Id: "node-2", Hostname: "b"}}}, nil
}

func stagingJob(stages ...*cloudmlv1.NodeStage) *cloudmlv1.Job {
	return &cloudmlv1.Job{Id: "j", State: cloudmlv1.JobState_JOB_STATE_PENDING, Stages: stages,
		Tasks: []*cloudmlv1.Task{{State: cloudmlv1.TaskState_TASK_STATE_PENDING, Reason: "staging"}}}
}

func stage(node string, st cloudmlv1.StageState, bytes int64, errText string) *cloudmlv1.NodeStage {
	return &cloudmlv1.NodeStage{NodeId: node, State: st, BytesDownloaded: bytes, Error: errText}
}

// nodeNames records the node each stage transfer named.
type nodeNames struct {
	recorder
	hosts map[string]string
}

func (n *nodeNames) Start(tr client.Transfer) client.Tracker {
	n.mu.Lock()
	n.hosts[tr.Name] = tr.Node.GetHostname()
	n.mu.Unlock()
	return n.recorder.Start(tr)
}

func TestWaitStagedFollowsEveryNode(t *testing.T) {
	const (
		staging = cloudmlv1.StageState_STAGE_STATE_STAGING
		staged  = cloudmlv1.StageState_STAGE_STATE_STAGED
		failed  = cloudmlv1.StageState_STAGE_STATE_FAILED
	)
	srv := &stagingJobs{jobs: []*cloudmlv1.Job{
		stagingJob(),
		stagingJob(stage("node-1", staging, 0, ""), stage("node-2", staging, 0, "")),
		stagingJob(stage("node-1", staging, 100, ""), stage("node-2", staged, 50, "")),
		stagingJob(stage("node-1", failed, 150, "disk full"), stage("node-2", staged, 50, "")),
	}}
	c := fakeClient(t, func(s *grpc.Server) {
		cloudmlv1.RegisterJobServiceServer(s, srv)
		cloudmlv1.RegisterClusterServiceServer(s, srv)
	}, nil)
	rec := &nodeNames{hosts: map[string]string{}}
	job, err := c.WaitStaged(t.Context(), "j", client.StageOptions{Progress: rec, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(job.GetStages()) != 2 || job.GetStages()[0].GetState() != failed {
		t.Errorf("last job read %v", job)
	}
	want := []string{"start stage node-1", "start stage node-2", "done node-2 50 <nil>", "done node-1 150 disk full"}
	if diff := cmp.Diff(want, rec.ends()); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"node-1": "a", "node-2": "b"}, rec.hosts); diff != "" {
		t.Errorf("stage transfers named nodes (-want +got):\n%s", diff)
	}
}

func TestWaitStagedGivesUpWhenNoNodeStages(t *testing.T) {
	srv := &stagingJobs{jobs: []*cloudmlv1.Job{stagingJob()}}
	c := fakeClient(t, func(s *grpc.Server) { cloudmlv1.RegisterJobServiceServer(s, srv) }, nil)
	job, err := c.WaitStaged(t.Context(), "j", client.StageOptions{Interval: time.Millisecond, StartWithin: 20 * time.Millisecond})
	if err != nil || len(job.GetStages()) != 0 {
		t.Errorf("WaitStaged of a job nobody stages: %v, %v", job, err)
	}
}
