package coordinator

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestContainerAssignmentEstimate: the estimate of a container job's largest
// assignment follows its largest task's parameters byte for byte, names
// the first of equally large tasks, and the limit is inclusive.
func TestContainerAssignmentEstimate(t *testing.T) {
	job := func(vals ...string) *jobEntry {
		var params []map[string]string
		for _, v := range vals {
			params = append(params, map[string]string{"p": v})
		}
		spec := &cloudmlv1.JobSpec{Name: "a", Image: "img", Command: []string{"true"}}
		return newJobEntry("a-000001", spec, nil, "file:///tmp/b", params, time.Now())
	}
	check := func(j *jobEntry, limit int) error {
		c := &Coordinator{cfg: Config{Limits: Limits{ContainerAssignmentBytes: limit}}}
		return c.checkContainerAssignment(j)
	}
	re := regexp.MustCompile(`task (\d+) would be about (\d+) bytes`)
	estimate := func(j *jobEntry) (task, n int) {
		t.Helper()
		err := check(j, 1)
		m := re.FindStringSubmatch(errString(err))
		if m == nil {
			t.Fatalf("with a limit of 1 byte: %v, want the estimate", err)
		}
		task, _ = strconv.Atoi(m[1])
		n, _ = strconv.Atoi(m[2])
		return task, n
	}
	x200, y1200 := strings.Repeat("x", 200), strings.Repeat("y", 1200)
	_, small := estimate(job(x200))
	task, big := estimate(job(x200, y1200, x200))
	if task != 1 || big-small != 1000 {
		t.Errorf("a task with 1000 more bytes of parameters: task %d, estimate %d against %d; want task 1, 1000 bytes more", task, big, small)
	}
	if task, _ := estimate(job(x200, x200)); task != 0 {
		t.Errorf("of two equal tasks the estimate names task %d, want the first", task)
	}
	if small > requestOverhead {
		t.Errorf("a 200-byte task is estimated at %d bytes, more than a whole request's overhead (%d)", small, requestOverhead)
	}
	if err := check(job(x200), small); err != nil {
		t.Errorf("a job exactly at the limit: %v", err)
	}
	if err := check(job(x200), small-1); err == nil {
		t.Error("a job one byte over the limit was accepted")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
