package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/grpcopt"
	"github.com/cloudml/cloudml/internal/jobspec"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stateDigest is the sha256 of state.db: unchanged means nothing stored.
func (h *harness) stateDigest() [32]byte {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.stateDir, store.FileName))
	if err != nil {
		h.t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func (h *harness) jobCount() int {
	h.t.Helper()
	return len(h.jobIDs())
}

// limitJob is a one-task job modified by fns.
func limitJob(fns ...func(*cloudmlv1.JobSpec)) *cloudmlv1.JobSpec {
	s := &cloudmlv1.JobSpec{Name: "lim", Command: []string{"true"}, Code: &cloudmlv1.Source{Url: "file:///tmp/code.tar.gz", Digest: "sha256:00"}}
	for _, fn := range fns {
		fn(s)
	}
	return s
}

func withEnv(n int, kv func(i int) (string, string)) func(*cloudmlv1.JobSpec) {
	return func(s *cloudmlv1.JobSpec) {
		s.Env = map[string]string{}
		for i := range n {
			k, v := kv(i)
			s.Env[k] = v
		}
	}
}

func withArgs(n, size int) func(*cloudmlv1.JobSpec) {
	return func(s *cloudmlv1.JobSpec) {
		s.Command = make([]string, n)
		for i := range s.Command {
			s.Command[i] = strings.Repeat("a", size/n)
		}
		s.Command[0] += strings.Repeat("a", size%n)
	}
}

func withData(n int) func(*cloudmlv1.JobSpec) {
	return func(s *cloudmlv1.JobSpec) {
		s.Data = map[string]*cloudmlv1.Source{}
		for i := range n {
			s.Data[fmt.Sprint("d", i)] = &cloudmlv1.Source{Url: fmt.Sprint("gs://bkt/d", i)}
		}
	}
}

func withGrid(vals ...[]string) func(*cloudmlv1.JobSpec) {
	return func(s *cloudmlv1.JobSpec) {
		s.Sweep = &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{}}
		for i, v := range vals {
			s.Sweep.Grid[fmt.Sprintf("p%02d", i)] = &cloudmlv1.ParamValues{Values: v}
		}
	}
}

// gridValues is n values of width w (one of them a byte longer with plus).
func gridValues(n, w int, plus bool) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%0*d", w, i)
	}
	if plus {
		out[0] += "x"
	}
	return out
}

// paddedTo pads the spec with one data URL to exactly n encoded bytes.
func paddedTo(n int) func(*cloudmlv1.JobSpec) {
	return func(s *cloudmlv1.JobSpec) {
		src := &cloudmlv1.Source{}
		s.Data = map[string]*cloudmlv1.Source{"pad": src}
		for k := 0; ; { // the URL's length prefixes may grow by a byte
			src.Url = "gs://bkt/" + strings.Repeat("a", k)
			d := n - proto.Size(s)
			if d == 0 {
				return
			}
			k += d
		}
	}
}

// TestSubmitLimits submits, for every spec limit at its default value, a
// job just past it (refused, naming the limit, with nothing stored) and
// one at it (accepted).
func TestSubmitLimits(t *testing.T) {
	dl := jobspec.DefaultLimits()
	kb64 := dl.EnvValueBytes
	one := []string{"1"}
	for _, tc := range []struct {
		name        string
		under, over *cloudmlv1.JobSpec
		code        codes.Code
		want        string
	}{
		{"env value (the 5 MiB one wedged a node)",
			limitJob(withEnv(1, func(int) (string, string) { return "BIG", strings.Repeat("v", kb64) })),
			limitJob(withEnv(1, func(int) (string, string) { return "BIG", strings.Repeat("v", 5<<20) })),
			codes.InvalidArgument, "env.BIG: value of 5242880 bytes, more than the limit of 65536 bytes per env value"},
		{"env value + 1",
			nil, limitJob(withEnv(1, func(int) (string, string) { return "BIG", strings.Repeat("v", kb64+1) })),
			codes.InvalidArgument, "env.BIG: value of 65537 bytes, more than the limit of 65536 bytes per env value"},
		{"env vars",
			limitJob(withEnv(1000, func(i int) (string, string) { return fmt.Sprint("E", i), "" })),
			limitJob(withEnv(1001, func(i int) (string, string) { return fmt.Sprint("E", i), "" })),
			codes.InvalidArgument, "env: 1001 variables, more than the limit of 1000"},
		{"env name",
			limitJob(withEnv(1, func(int) (string, string) { return strings.Repeat("K", 256), "" })),
			limitJob(withEnv(1, func(int) (string, string) { return strings.Repeat("K", 257), "" })),
			codes.InvalidArgument, "name of 257 bytes, more than the limit of 256 bytes per env name"},
		{"env bytes",
			limitJob(withEnv(16, func(i int) (string, string) { return fmt.Sprintf("E%02d", i), strings.Repeat("v", kb64-3) })),
			limitJob(withEnv(16, func(i int) (string, string) { return fmt.Sprintf("E%02d", i), strings.Repeat("v", kb64-3+i/15) })),
			codes.InvalidArgument, "env: 1048577 bytes of names and values, more than the limit of 1048576 bytes for all env variables"},
		{"args", limitJob(withArgs(4096, 4096)), limitJob(withArgs(4097, 4097)),
			codes.InvalidArgument, "command: 4097 arguments, more than the limit of 4096"},
		{"command bytes", limitJob(withArgs(2, 128<<10)), limitJob(withArgs(2, 128<<10+1)),
			codes.InvalidArgument, "command: 131073 bytes of arguments, more than the limit of 131072 bytes per command"},
		{"data", limitJob(withData(1000)), limitJob(withData(1001)),
			codes.InvalidArgument, "data: 1001 inputs, more than the limit of 1000"},
		{"params", limitJob(withGrid(func() [][]string {
			v := make([][]string, 64)
			for i := range v {
				v[i] = one
			}
			return v
		}()...)),
			limitJob(withGrid(func() [][]string {
				v := make([][]string, 65)
				for i := range v {
					v[i] = one
				}
				return v
			}()...)),
			codes.InvalidArgument, "sweep: 65 parameters, more than the limit of 64"},
		{"param value", limitJob(withGrid([]string{strings.Repeat("v", 4096)})), limitJob(withGrid([]string{strings.Repeat("v", 4097)})),
			codes.InvalidArgument, "sweep.grid.p00: value 0 is 4097 bytes, more than the limit of 4096 bytes per parameter value"},
		{"tasks", limitJob(withGrid(gridValues(100000, 1, false))), limitJob(withGrid(gridValues(100001, 1, false))),
			codes.InvalidArgument, "sweep: 100001 tasks, more than the limit of 100000"},
		// 4096 tasks x (3 + 4 + 3 + 4086) bytes = 16 MiB: the 37.7 KB spec
		// that grew state.db by 90 MB was of this kind.
		{"sweep bytes", limitJob(withGrid(gridValues(4096, 4, false), []string{strings.Repeat("v", 4086)})),
			limitJob(withGrid(gridValues(4096, 4, true), []string{strings.Repeat("v", 4086)})),
			codes.InvalidArgument, "sweep: the tasks' parameters come to 16777217 bytes, more than the limit of 16777216 bytes for all tasks of a job"},
		{"spec bytes", limitJob(paddedTo(4 << 20)), limitJob(paddedTo(4<<20 + 1)),
			codes.InvalidArgument, "spec: 4194305 bytes encoded, more than the limit of 4194304 bytes per job spec"},
		{"request bytes", nil, limitJob(paddedTo(8<<20 + 1)),
			codes.ResourceExhausted, "grpc: received message larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, "")
			before := h.stateDigest()
			_, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: tc.over})
			if got := status.Code(err); got != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("past the limit: %s\nwant %v containing %q", short(err), tc.code, tc.want)
			}
			if n := h.jobCount(); n != 0 || h.stateDigest() != before {
				t.Fatalf("a refused job was stored: %d jobs, state.db changed: %v", n, h.stateDigest() != before)
			}
			if tc.under != nil {
				if _, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: tc.under}); err != nil {
					t.Fatalf("at the limit: %s", short(err))
				}
			}
		})
	}
}

// agentConn dials the harness as an agent does: grpcopt.Dial (the agent's
// receive limit) first, then opts.
func agentConn(t *testing.T, h *harness, opts ...grpc.DialOption) *fakeAgent {
	t.Helper()
	reg := newAgent(t, h, 1)
	reg.close()
	pair := reg.cred
	all := append(grpcopt.Dial(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return h.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(h.caPool(), func() *tls.Certificate { return pair }))))
	conn, err := grpc.NewClient("passthrough:///bufnet", append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{t: t, h: h, conn: conn, client: cloudmlv1.NewAgentServiceClient(conn), id: reg.id, cred: pair}
	t.Cleanup(a.close)
	return a
}

// firstCommand opens a session and returns its first command after
// SessionStarted, or the error receiving it.
func (a *fakeAgent) firstCommand() (*cloudmlv1.SessionResponse, error) {
	ctx, cancel := context.WithCancel(ctxT(a.t))
	defer cancel()
	stream, err := a.client.Session(ctx, &cloudmlv1.SessionRequest{}, a.creds())
	if err != nil {
		return nil, err
	}
	if _, err := stream.Recv(); err != nil {
		return nil, err
	}
	return stream.Recv()
}

// largestJob is at every spec limit at once: env, command, 64 parameters
// of 4 KiB, and data URLs that take the spec to its size limit.
func largestJob() *cloudmlv1.JobSpec {
	dl := jobspec.DefaultLimits()
	params := make([][]string, dl.Params)
	for i := range params {
		params[i] = []string{strings.Repeat("p", dl.ParamValueBytes)}
	}
	s := limitJob(
		withEnv(16, func(i int) (string, string) { return fmt.Sprintf("E%02d", i), strings.Repeat("v", dl.EnvValueBytes-3) }),
		withArgs(dl.Args, dl.CommandBytes),
		withGrid(params...),
	)
	pad := dl.SpecBytes - proto.Size(s)
	s.Data = map[string]*cloudmlv1.Source{}
	for i := range dl.DataSources {
		s.Data[fmt.Sprintf("d%03d", i)] = &cloudmlv1.Source{Url: "gs://b/"}
	}
	per := (pad - proto.Size(&cloudmlv1.JobSpec{Data: s.Data})) / dl.DataSources
	for _, src := range s.Data {
		src.Url = "gs://bkt/" + strings.Repeat("u", per-16) // room for longer length prefixes
	}
	last := s.Data["d000"]
	for k := len(last.Url); ; { // the last one takes up the rest
		last.Url = "gs://bkt/" + strings.Repeat("u", k-len("gs://bkt/"))
		d := dl.SpecBytes - proto.Size(s)
		if d == 0 {
			return s
		}
		k += d
	}
}

// short cuts an error for a test failure message: some carry a whole
// oversized input.
func short(err error) string {
	s := fmt.Sprint(err)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// TestLargestJobReachesAnAgent: the largest job the coordinator accepts
// gives an Assignment that an agent, dialing with grpcopt.Dial, receives,
// within the bound the limits promise, far below what agents receive.
func TestLargestJobReachesAnAgent(t *testing.T) {
	spec := largestJob()
	if n := proto.Size(spec); n != jobspec.DefaultLimits().SpecBytes {
		t.Fatalf("largest job is %d bytes", n)
	}

	h := start(t, "")
	a := agentConn(t, h)
	job := h.submit(spec)
	msg, err := a.firstCommand()
	if err != nil {
		t.Fatalf("agent receiving the largest assignment: %s", short(err))
	}
	as := msg.GetAssignment()
	if as.GetRef().GetJobId() != job.GetId() || len(as.GetEnv()) != 16 || len(as.GetParams()) != 64 || len(as.GetData()) != 1000 {
		t.Fatalf("assignment %v... is not the job's", as.GetRef())
	}
	// The bound the limits promise: the spec, one task's parameters twice
	// over (names and values), and room for the rest.
	size := proto.Size(msg)
	bound := jobspec.DefaultLimits().SpecBytes + 2*int(jobspec.SweepBytes(spec.GetSweep())) + requestOverhead
	t.Logf("largest assignment: %d bytes (spec %d); agents receive %d", size, proto.Size(spec), grpcopt.MaxMsgBytes)
	if size > bound || bound > grpcopt.MaxMsgBytes/8 {
		t.Errorf("assignment of %d bytes, bound %d, agents receive %d", size, bound, grpcopt.MaxMsgBytes)
	}
}

// TestLogCallLimit: a log call just under the limit is stored, one just
// over is refused with nothing of it stored.
func TestLogCallLimit(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	h.submit(gridSpec("logcall", 1))
	as := n.next()
	ref := as.GetRef()
	limit := h.cfg.Limits.LogCallBytes
	half := limit / 2
	if acked, err := n.publish(ref, batch(1, strings.Repeat("a", half)), batch(2, strings.Repeat("b", half))); err != nil || acked != 2 {
		t.Fatalf("call of %d bytes: acked %d, %v", limit, acked, err)
	}
	_, err := n.publish(ref, batch(3, strings.Repeat("a", half)), batch(4, strings.Repeat("b", half+1)))
	want := fmt.Sprintf("2 batches with %d bytes of data, more than the limit of %d bytes per call", limit+1, limit)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), want) {
		t.Fatalf("call of %d bytes: %v, want ResourceExhausted with %q", limit+1, err, want)
	}
	st := n.logStream(ctxT(t))
	st.Send(&cloudmlv1.StreamLogsRequest{Ref: ref, Batches: []*cloudmlv1.LogBatch{batch(3, strings.Repeat("a", limit+1))}})
	if err := endErr(st); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "per call") {
		t.Fatalf("stream message of %d bytes: %v", limit+1, err)
	}
	if acked, err := h.c.store.AckedSeq(ref.GetJobId(), 0, 1); acked != 2 || err != nil {
		t.Errorf("acked %d, %v after the refused calls; want 2", acked, err)
	}
}

// TestAttemptLogCap: past the per-attempt limit the coordinator keeps the
// whole lines that fit and one note, acknowledges the rest without storing
// it (also after a restart), and the task ends normally.
func TestAttemptLogCap(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, func(c *Config) { c.Limits.AttemptLogBytes = 1000 })
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("logcap", 1))
	as := n.next()
	ref := as.GetRef()
	if err := n.report(ref, running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	ten := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABC\n", 10) // 400 bytes
	// Records of 413 bytes: two fit in 1000, the third keeps 4 lines.
	if acked, err := n.publish(ref, batch(1, ten), batch(2, ten), batch(3, ten), batch(4, ten)); err != nil || acked != 4 {
		t.Fatalf("publish past the cap: acked %d, %v; want 4", acked, err)
	}
	st := n.logStream(ctxT(t))
	sendLogs(t, st, ref, 6, batch(5, ten), batch(6, ten))
	if err := endErr(st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, store.LogDirName, ref.GetJobId(), store.PackName))
	note := logCapNote(1000)
	// Three records, each with 8 header bytes the cap does not count (the
	// job's log file names the task and attempt of each).
	if want := int64(2*413 + 13 + 160 + len(note) + 3*8); err != nil || fi.Size() != want {
		t.Errorf("log file %v, %v; want %d bytes", fi.Size(), err, want)
	}

	// After a restart the node reports an end whose last batch the new
	// coordinator never saw: nothing is missing from a capped log.
	id, cred := n.id, n.cred
	n.close()
	h.stop()
	h = start(t, dir, func(c *Config) { c.Limits.AttemptLogBytes = 1000 })
	back := rejoin(t, h, id, cred)
	back.open(ref)
	if acked, err := back.publish(ref, batch(8, ten)); err != nil || acked != 8 {
		t.Fatalf("publish after restart: acked %d, %v; want 8", acked, err)
	}
	if err := back.report(ref, succeeded, 0, 9, nil); err != nil {
		t.Fatalf("report after the cap: %v", err)
	}
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	msgs, _ := h.jobLogs(job.GetId())
	if got, want := dataOf(msgs), ten+ten+ten[:160]+note; got != want {
		t.Errorf("logs shown:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(note, "limit of 1000 bytes per attempt") || !strings.Contains(note, "--max-log-bytes") {
		t.Errorf("note %q does not name the limit and its flag", note)
	}
}

// TestImageSizeLimit: an image over Limits.ImageBytes is refused at its
// header when it says its size, else once that many bytes came, and
// nothing of it is kept; one at the limit is kept.
func TestImageSizeLimit(t *testing.T) {
	id, data := testArchive(t, `{"big":1}`, 200<<10)
	limit := int64(len(data))
	h := start(t, "", func(c *Config) { c.Limits.ImageBytes = limit - 1 })
	imagesDir := filepath.Join(h.stateDir, "images")
	// The header says the size: no archive is asked for.
	_, sent, err := h.push("big:1", id, data)
	if status.Code(err) != codes.ResourceExhausted || sent || !strings.Contains(err.Error(), fmt.Sprintf("more than the limit of %d bytes per image; raise it with `coordinator serve --max-image-bytes`", limit-1)) {
		t.Fatalf("push of %d bytes: sent %v, %v", limit, sent, err)
	}
	// The header says nothing: refused once the limit is passed.
	stream, err := h.jobs.PushImage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Header{Header: &cloudmlv1.ImageHeader{Name: "big:1", Id: id}}})
	for off := 0; off < len(data); off += 64 << 10 {
		if stream.Send(&cloudmlv1.PushImageRequest{Part: &cloudmlv1.PushImageRequest_Chunk{Chunk: data[off:min(off+64<<10, len(data))]}}) != nil {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-image-bytes") {
		t.Fatalf("push without a size: %v", err)
	}
	// A node's upload of it, asked for by a fetch.
	mgr, wrk := formSwarm(t, h)
	done := make(chan error, 1)
	go func() { _, _, err := wrk.fetch("big:1"); done <- err }()
	mgr.nextExport()
	if _, err := mgr.upload("big:1", id, data, ""); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("upload of %d bytes: %v", limit, err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "--max-image-bytes") {
		t.Errorf("fetch after the refused upload: %v", err)
	}
	list, err := h.jobs.ListImages(ctxT(t), &cloudmlv1.ListImagesRequest{})
	entries, _ := os.ReadDir(imagesDir)
	if err != nil || len(list.GetImages()) != 0 || len(entries) != 0 {
		t.Fatalf("refused images left %v and files %v (%v)", list.GetImages(), entries, err)
	}

	h2 := start(t, "", func(c *Config) { c.Limits.ImageBytes = limit })
	if resp, _, err := h2.push("big:1", id, data); err != nil || resp.GetBytesReceived() != limit {
		t.Fatalf("push at the limit: %v, %v", resp, err)
	}
}

// TestUnstartedTasksAreDerived: a job's tasks are stored once they change;
// after a restart the others come back pending with their parameters.
func TestUnstartedTasksAreDerived(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("derived", 5))
	n.run(n.next(), succeeded, 0, nil)
	waitFor(t, "task 1 assigned", func() bool {
		return h.job(job.GetId()).GetTasks()[1].GetState() == cloudmlv1.TaskState_TASK_STATE_ASSIGNED
	})
	n.close()
	h.stop()

	h = start(t, dir)
	got := h.job(job.GetId()).GetTasks()
	want := gridSpec("derived", 5).GetSweep().GetGrid()["x"].GetValues()
	wantState := []cloudmlv1.TaskState{succeeded, cloudmlv1.TaskState_TASK_STATE_ASSIGNED, pending, pending, pending}
	for i, task := range got {
		if task.GetParams()["x"] != want[i] || task.GetState() != wantState[i] {
			t.Errorf("task %d after restart: %v %v, want %s %v", i, task.GetParams(), task.GetState(), want[i], wantState[i])
		}
	}
}

// TestReportBounds: a final report with too many metrics, a metric name
// too long and a long message is accepted (an agent would send it again
// for ever) and kept within the limits, saying what was dropped.
func TestReportBounds(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("report", 1))
	ref := n.next().GetRef()
	metrics := map[string]float64{strings.Repeat("n", 257): 1}
	for i := range 1001 {
		metrics[fmt.Sprintf("m%04d", i)] = float64(i)
	}
	_, err := n.client.ReportTask(ctxT(t), &cloudmlv1.ReportTaskRequest{
		Ref: ref, State: cloudmlv1.TaskState_TASK_STATE_FAILED, ExitCode: 1, Metrics: metrics, Message: strings.Repeat("é", 5000),
	}, n.creds())
	if err != nil {
		t.Fatalf("report: %s", short(err))
	}
	task := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_FAILED).GetTasks()[0]
	if len(task.GetMetrics()) != 1000 || task.GetMetrics()["m0999"] != 999 || task.GetMetrics()["m1000"] != 0 {
		t.Errorf("kept %d metrics, want m0000..m0999", len(task.GetMetrics()))
	}
	reason := task.GetReason()
	if !strings.Contains(reason, "exit 1: 2 of 1002 metrics dropped (at most 1000, names of at most 256 bytes); éé") ||
		!strings.HasSuffix(reason, "é...)") || len(reason) > 4096+100 {
		t.Errorf("reason of %d bytes: %.200s...%s", len(reason), reason, reason[len(reason)-20:])
	}
}

// TestContainerAssignmentLimit: a container job whose task assignment a
// swarm service could not hold is refused, with nothing stored; the same
// job as processes, or with less env, is accepted.
func TestContainerAssignmentLimit(t *testing.T) {
	h := start(t, "")
	env := func(values int) func(*cloudmlv1.JobSpec) {
		return withEnv(values, func(i int) (string, string) { return fmt.Sprint("E", i), strings.Repeat("v", 60<<10) })
	}
	image := func(s *cloudmlv1.JobSpec) { s.Image = "cloudml/octave:7" }
	before := h.stateDigest()
	_, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: limitJob(env(9), image)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "more than the limit of 524288 bytes per task of a container job") {
		t.Fatalf("container job with 540 KiB of env: %s", short(err))
	}
	if h.jobCount() != 0 || h.stateDigest() != before {
		t.Fatal("the refused job was stored")
	}
	for name, spec := range map[string]*cloudmlv1.JobSpec{"processes": limitJob(env(9)), "less env": limitJob(env(8), image)} {
		if _, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: spec}); err != nil {
			t.Errorf("%s: %s", name, short(err))
		}
	}
}
