package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"google.golang.org/grpc"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stubDocker is an in-memory daemon: services by name, tasks from a
// function, containers from a map, events from a channel.
type stubDocker struct {
	mu         sync.Mutex
	services   map[string]swarm.Service // by name
	removed    []string
	creates    int
	tasks      func(serviceID string) []swarm.Task
	nodes      map[string]string // swarm node id → hostname
	containers map[string]container.InspectResponse
	logs       map[string][]byte // multiplexed log stream by container id
	followLogs map[string][]byte // if set, what a follow returns (a truncated stream)
	volumes    map[string]string // name → mountpoint
	killed     []string
	events     chan events.Message
	eventErrs  chan error
	rmVolumes  []string
	waits      int // ContainerWait calls
}

func newStub() *stubDocker {
	return &stubDocker{
		services: map[string]swarm.Service{}, nodes: map[string]string{},
		containers: map[string]container.InspectResponse{}, logs: map[string][]byte{},
		volumes: map[string]string{}, events: make(chan events.Message, 8), eventErrs: make(chan error, 1),
	}
}

func (s *stubDocker) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, _ swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	if _, ok := s.services[spec.Name]; ok {
		return swarm.ServiceCreateResponse{}, errdefs.Conflict(errors.New("name conflicts with an existing object"))
	}
	id := fmt.Sprintf("svc%d", s.creates)
	s.services[spec.Name] = swarm.Service{ID: id, Spec: spec}
	return swarm.ServiceCreateResponse{ID: id}, nil
}

func (s *stubDocker) ServiceList(_ context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []swarm.Service
	for name, svc := range s.services {
		for _, want := range opts.Filters.Get("name") {
			if strings.HasPrefix(name, want) {
				out = append(out, svc)
			}
		}
	}
	return out, nil
}

func (s *stubDocker) ServiceRemove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, svc := range s.services {
		if name == id || svc.ID == id {
			delete(s.services, name)
			s.removed = append(s.removed, name)
			return nil
		}
	}
	return errdefs.NotFound(fmt.Errorf("service %s not found", id))
}

func (s *stubDocker) TaskList(_ context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error) {
	var out []swarm.Task
	for _, id := range opts.Filters.Get("service") {
		if s.tasks != nil {
			out = append(out, s.tasks(id)...)
		}
	}
	return out, nil
}

func (s *stubDocker) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.nodes[id]
	if !ok {
		return swarm.Node{}, nil, errdefs.NotFound(errors.New("no such node"))
	}
	return swarm.Node{ID: id, Description: swarm.NodeDescription{Hostname: h}}, nil, nil
}

func (s *stubDocker) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	return s.events, s.eventErrs
}

func (s *stubDocker) ContainerList(_ context.Context, _ container.ListOptions) ([]container.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []container.Summary
	for id, c := range s.containers {
		out = append(out, container.Summary{ID: id, Labels: c.Config.Labels})
	}
	return out, nil
}

func (s *stubDocker) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return container.InspectResponse{}, errdefs.NotFound(errors.New("no such container"))
	}
	return c, nil
}

func (s *stubDocker) ContainerLogs(_ context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.followLogs[id]; ok && opts.Follow {
		return io.NopCloser(bytes.NewReader(f)), nil
	}
	return io.NopCloser(bytes.NewReader(s.logs[id])), nil
}

func (s *stubDocker) ContainerWait(_ context.Context, id string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits++
	respC, errC := make(chan container.WaitResponse, 1), make(chan error, 1)
	c, ok := s.containers[id]
	if !ok {
		errC <- errdefs.NotFound(errors.New("no such container"))
	} else {
		respC <- container.WaitResponse{StatusCode: int64(c.State.ExitCode)}
	}
	return respC, errC
}

func (s *stubDocker) ContainerKill(_ context.Context, id, signal string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = append(s.killed, id+":"+signal)
	return nil
}

func (s *stubDocker) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, id)
	return nil
}

func (s *stubDocker) VolumeInspect(_ context.Context, name string) (volume.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, ok := s.volumes[name]
	if !ok {
		return volume.Volume{}, errdefs.NotFound(errors.New("no such volume"))
	}
	return volume.Volume{Name: name, Mountpoint: mp}, nil
}

func (s *stubDocker) VolumeRemove(_ context.Context, name string, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rmVolumes = append(s.rmVolumes, name)
	return nil
}

// The stub has no images; image_test.go's fakeImageDocker has.

func (s *stubDocker) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("no such image: %s", ref))
}

func (s *stubDocker) ImageLoad(context.Context, io.Reader, ...client.ImageLoadOption) (image.LoadResponse, error) {
	return image.LoadResponse{}, errdefs.NotImplemented(errors.New("stub: no image load"))
}

func (s *stubDocker) ImageSave(context.Context, []string, ...client.ImageSaveOption) (io.ReadCloser, error) {
	return nil, errdefs.NotImplemented(errors.New("stub: no image save"))
}

func (s *stubDocker) ImagePull(context.Context, string, image.PullOptions) (io.ReadCloser, error) {
	return nil, errdefs.NotImplemented(errors.New("stub: no registry"))
}

func (s *stubDocker) ImageTag(context.Context, string, string) error {
	return errdefs.NotImplemented(errors.New("stub: no image tag"))
}

// muxed is a multiplexed log stream, as the daemon sends for a container
// without a TTY.
func muxed(parts ...[2]string) []byte {
	var buf bytes.Buffer
	out, errw := stdcopy.NewStdWriter(&buf, stdcopy.Stdout), stdcopy.NewStdWriter(&buf, stdcopy.Stderr)
	for _, p := range parts {
		w := out
		if p[0] == "stderr" {
			w = errw
		}
		w.Write([]byte(p[1]))
	}
	return buf.Bytes()
}

// reports records ReportTask calls.
type reports struct {
	mu      sync.Mutex
	got     []*cloudmlv1.ReportTaskRequest
	changed chan struct{}
}

func newReports() *reports { return &reports{changed: make(chan struct{}, 64)} }

func (r *reports) ReportTask(_ context.Context, in *cloudmlv1.ReportTaskRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	r.mu.Lock()
	r.got = append(r.got, in)
	r.mu.Unlock()
	r.changed <- struct{}{}
	return &cloudmlv1.ReportTaskResponse{}, nil
}
