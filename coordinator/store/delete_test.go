package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// DeleteJob removes the job's records and logs, and nothing of a job whose
// id extends it; the deletion survives a reopen.
func TestDeleteJob(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC()
	var ch Changes
	for _, id := range []string{"j", "j-2"} {
		ch.Jobs = append(ch.Jobs, &Job{ID: id, State: cloudmlv1.JobState_JOB_STATE_SUCCEEDED, TaskCount: 2, CreateTime: now})
		for task := int32(0); task < 2; task++ {
			ch.Tasks = append(ch.Tasks, &Task{JobID: id, Index: task, Attempt: 1})
			ch.Attempts = append(ch.Attempts, &Attempt{JobID: id, Task: task, Attempt: 1})
			if _, _, err := s.AppendLogs(id, task, 1, []*cloudmlv1.LogBatch{{Seq: 1, Data: []byte("0123456789")}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Save(&ch); err != nil {
		t.Fatal(err)
	}
	freed, err := s.DeleteJob("j")
	if err != nil {
		t.Fatal(err)
	}
	if freed < 20 {
		t.Errorf("freed %d bytes, want at least the 20 bytes of log data", freed)
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "j")); !os.IsNotExist(err) {
		t.Errorf("the job's log directory is still there: %v", err)
	}
	if again, err := s.DeleteJob("j"); err != nil || again != 0 {
		t.Errorf("second delete = %d, %v; want 0, nil", again, err)
	}
	if _, err := s.DeleteJob("../x"); err == nil {
		t.Error("a job id that escapes the log directory was accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Jobs) != 1 || snap.Jobs[0].ID != "j-2" || len(snap.Tasks) != 2 || len(snap.Attempts) != 2 {
		t.Fatalf("after the delete: %d jobs (%v), %d tasks, %d attempts; want only j-2 with 2 and 2",
			len(snap.Jobs), snap.Jobs, len(snap.Tasks), len(snap.Attempts))
	}
	for _, a := range snap.Attempts {
		if a.JobID != "j-2" {
			t.Errorf("attempt of %s survived", a.JobID)
		}
	}
	logs, err := s.ReadLogs("j-2", 1, 1, 0, 1<<20)
	if err != nil || len(logs) != 1 || string(logs[0].Data) != "0123456789" {
		t.Errorf("j-2's logs = %v, %v; want them intact", logs, err)
	}
}
