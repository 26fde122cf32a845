package store

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestChangesEmptyCountsEveryList fills every pair of Changes' lists with
// one element each: however the counts are combined, a change holding
// anything is not empty (Save would drop it otherwise).
func TestChangesEmptyCountsEveryList(t *testing.T) {
	typ := reflect.TypeOf(Changes{})
	if !(&Changes{}).Empty() {
		t.Fatal("a zero Changes is not empty")
	}
	for i := 0; i < typ.NumField(); i++ {
		for j := i; j < typ.NumField(); j++ {
			var c Changes
			v := reflect.ValueOf(&c).Elem()
			for _, k := range []int{i, j} {
				f := v.Field(k)
				f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			}
			if c.Empty() {
				t.Errorf("Changes with one %s and one %s is empty", typ.Field(i).Name, typ.Field(j).Name)
			}
		}
	}
}

// TestSaveWritesEveryRecordOfEachKind saves several records of each kind
// in one Changes: each is written, not only the first of a kind.
func TestSaveWritesEveryRecordOfEachKind(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if err := s.Save(&Changes{
		Credentials: []*Credential{{Name: "a", Role: "admin"}, {Name: "b", Role: "submitter"}},
		Pools:       []*Pool{{Name: "default"}, {Name: "big"}},
		Machines:    []*Machine{{ID: "m1"}, {ID: "m2"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&Changes{DropMachines: []string{"m1", "m2"}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	fl, err := s.LoadFleet()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Credentials) != 2 || len(fl.Pools) != 2 || len(fl.Machines) != 0 {
		t.Fatalf("after saving 2 credentials, 2 pools and 2 machines, then dropping the machines: %d credentials, %d pools, %d machines",
			len(snap.Credentials), len(fl.Pools), len(fl.Machines))
	}
}

// TestOpenDropsEveryLegacyBucket opens a state file from before logs moved
// to segment files: every bucket that held them is dropped.
func TestOpenDropsEveryLegacyBucket(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range legacyBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	_ = s.db.View(func(tx *bolt.Tx) error {
		for _, b := range legacyBuckets {
			if tx.Bucket(b) != nil {
				t.Errorf("legacy bucket %q kept", b)
			}
		}
		return nil
	})
}

// TestDeleteJobForgetsOnlyItsSegments deletes one job while another's log
// segment is open: the other keeps appending to its file, and the deleted
// job, written again, starts a new one.
func TestDeleteJobForgetsOnlyItsSegments(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	batch := func(seq uint64, text string) []*cloudmlv1.LogBatch {
		return []*cloudmlv1.LogBatch{{Seq: seq, Data: []byte(text)}}
	}
	for _, job := range []string{"a-000001", "b-000002"} {
		if _, _, err := s.AppendLogs(job, 0, 1, batch(1, job+" one\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteJob("a-000001"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendLogs("a-000001", 0, 1, batch(1, "again\n")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendLogs("b-000002", 0, 1, batch(2, "b two\n")); err != nil {
		t.Fatal(err)
	}
	text := func(job string) string {
		es, err := s.ReadLogs(job, 0, 1, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, e := range es {
			out += string(e.Data)
		}
		return out
	}
	if got := text("a-000001"); got != "again\n" {
		t.Errorf("deleted job written again reads %q, want %q", got, "again\n")
	}
	if got := text("b-000002"); got != "b-000002 one\nb two\n" {
		t.Errorf("the other job reads %q", got)
	}
}

// TestReopenedJobDirScansEveryAttemptsFile: after a restart, a job's log
// directory exists already, so the attempts' files in it are read before
// they are appended to: the second attempt written after the reopen
// continues its seqs too, not only the first (which registers the
// directory).
func TestReopenedJobDirScansEveryAttemptsFile(t *testing.T) {
	dir := t.TempDir()
	one := func(seq uint64, text string) []*cloudmlv1.LogBatch {
		return []*cloudmlv1.LogBatch{{Seq: seq, Data: []byte(text)}}
	}
	s := open(t, dir)
	for task := range int32(2) {
		for seq := uint64(1); seq <= 2; seq++ {
			if _, _, err := s.AppendLogs("a-000001", task, 1, one(seq, fmt.Sprintf("t%d s%d\n", task, seq))); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	for task := range int32(2) {
		acked, stored, err := s.AppendLogs("a-000001", task, 1, one(3, fmt.Sprintf("t%d s3\n", task)))
		if err != nil || acked != 3 || stored != 1 {
			t.Fatalf("task %d after the reopen: acked %d, stored %d, %v; want 3, 1", task, acked, stored, err)
		}
		es, err := s.ReadLogs("a-000001", task, 1, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, e := range es {
			got += string(e.Data)
		}
		if want := fmt.Sprintf("t%d s1\nt%d s2\nt%d s3\n", task, task, task); got != want {
			t.Errorf("task %d reads %q, want %q", task, got, want)
		}
	}
}

// TestRemovedLogDirIsMadeAgain: a log directory removed under a running
// store (by hand) is made again by the next write.
func TestRemovedLogDirIsMadeAgain(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	logs := filepath.Join(dir, LogDirName)
	if _, err := os.Stat(logs); err != nil {
		t.Fatalf("no log directory at %s: %v", logs, err)
	}
	if err := os.RemoveAll(logs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendLogs("a-000001", 0, 1, []*cloudmlv1.LogBatch{{Seq: 1, Data: []byte("x\n")}}); err != nil {
		t.Fatalf("append after the log directory was removed: %v", err)
	}
}
