package coordinator

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// getJobPages follows GetJob's pages from req and returns the task indexes
// of each page.
func getJobPages(t *testing.T, h *harness, req *cloudmlv1.GetJobRequest) [][]int32 {
	t.Helper()
	var pages [][]int32
	for {
		resp, err := h.jobs.GetJob(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		var idx []int32
		for _, tk := range resp.GetJob().GetTasks() {
			idx = append(idx, tk.GetIndex())
		}
		if n := resp.GetJob().GetTaskStates()["pending"] + resp.GetJob().GetTaskStates()["succeeded"] + resp.GetJob().GetTaskStates()["assigned"]; n != 5 {
			t.Errorf("a page's counts by state cover %d tasks, want all 5: %v", n, resp.GetJob().GetTaskStates())
		}
		pages = append(pages, idx)
		if resp.GetNextPageToken() == "" {
			return pages
		}
		if len(pages) > 10 {
			t.Fatalf("more than 10 pages: %v", pages)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// TestGetJobPagesAndFiltersTasks: a 5-task job read 2 tasks a page, and
// only its succeeded tasks, with the counts by state always of the whole
// job.
func TestGetJobPagesAndFiltersTasks(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("pages", 5)).GetId()
	a, b := n.next(), n.next()
	n.run(a, succeeded, 0, nil)
	n.run(b, succeeded, 0, nil)
	n.next() // two more assigned; the fifth stays pending
	n.next()
	done := []int32{a.GetRef().GetTaskIndex(), b.GetRef().GetTaskIndex()}
	slices.Sort(done)

	pages := getJobPages(t, h, &cloudmlv1.GetJobRequest{JobId: job, PageSize: 2})
	if want := [][]int32{{0, 1}, {2, 3}, {4}}; !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("pages of 2: %v, want %v", pages, want)
	}
	pages = getJobPages(t, h, &cloudmlv1.GetJobRequest{JobId: job})
	if want := [][]int32{{0, 1, 2, 3, 4}}; !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("page size 0: %v, want every task at once %v", pages, want)
	}
	succ := []cloudmlv1.TaskState{succeeded}
	pages = getJobPages(t, h, &cloudmlv1.GetJobRequest{JobId: job, TaskStates: succ, PageSize: 1})
	if want := [][]int32{{done[0]}, {done[1]}}; !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("succeeded tasks 1 a page: %v, want %v", pages, want)
	}

	_, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job, PageSize: -1})
	wantCode(t, err, codes.InvalidArgument)
	_, err = h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job, PageToken: "x"})
	wantCode(t, err, codes.InvalidArgument)
	if pages := getJobPages(t, h, &cloudmlv1.GetJobRequest{JobId: job, PageToken: "0", PageSize: 5}); len(pages) != 1 || len(pages[0]) != 5 {
		t.Errorf("page token 0 (the first task): %v, want one page of all 5", pages)
	}
	resp, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job, PageToken: "99"})
	if err != nil || len(resp.GetJob().GetTasks()) != 0 || resp.GetNextPageToken() != "" {
		t.Errorf("a token past the end: %d tasks, next %q, %v; want none, none, nil", len(resp.GetJob().GetTasks()), resp.GetNextPageToken(), err)
	}
}

// TestGetJobFilterOfAnUnknownState: a state this coordinator does not know
// (a newer client's, or a typo'd number) selects no task and fails
// nothing; the counts still cover the whole job.
func TestGetJobFilterOfAnUnknownState(t *testing.T) {
	h := start(t, "")
	job := h.submit(gridSpec("unknown", 3)).GetId()
	for _, st := range []cloudmlv1.TaskState{cloudmlv1.TaskState(len(cloudmlv1.TaskState_name)), 99, -1} {
		resp, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job, TaskStates: []cloudmlv1.TaskState{st}})
		if err != nil {
			t.Fatalf("GetJob filtering state %d: %v", st, err)
		}
		if n := len(resp.GetJob().GetTasks()); n != 0 || resp.GetJob().GetTaskStates()["pending"] != 3 {
			t.Errorf("GetJob filtering state %d: %d tasks, counts %v; want none, and 3 pending", st, n, resp.GetJob().GetTaskStates())
		}
	}
}
