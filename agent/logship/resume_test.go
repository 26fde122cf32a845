package logship

import (
	"context"
	"strings"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// A resuming shipper skips exactly the stored byte count of a stream,
// counting the newlines Copy adds, however the reads fall. The count ends
// mid-line when the coordinator capped the log inside a batch.
func TestResumeSkipsTheStoredBytes(t *testing.T) {
	long := strings.Repeat("y", readBuf+5)
	for _, tc := range []struct {
		name   string
		stored string // of stdout, by the earlier agent
		reads  []string
		want   string // the rest, shipped by this one
	}{
		{"a count at a line end", "a\nb\n", []string{"a\nb\nc\n"}, "c\n"},
		{"a count over several reads", "a\nb\n", []string{"a\n", "b\n", "c\n", "d\n"}, "c\nd\n"},
		{"a long line split by the earlier agent", long[:readBuf] + "\n", []string{long + "\n"}, long[readBuf:] + "\n"},
		{"a partial last line completed by the earlier agent", "a\nb\n", []string{"a\nb"}, ""},
		{"a count inside a partial line", "a\nb", []string{"a\nbcd"}, "cd\n"},
		{"a count ending before the newline Copy adds", "a\nb", []string{"a\nb"}, "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &store{batches: []*cloudmlv1.LogBatch{{Seq: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(tc.stored)}}}
			cfg := fastConfig(t, st)
			cfg.Client = &memCoord{st: st}
			cfg.Resume = true
			cfg.BatchBytes = 1 << 20 // one line longer than the read buffer stays in one batch
			cfg.MaxCallBytes = 4 << 20
			s := New(ctxT(t), cfg)
			if err := s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, chunks(tc.reads...), nil); err != nil {
				t.Fatal(err)
			}
			last, err := s.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for i, b := range st.batches[1:] {
				if b.GetSeq() != uint64(i+2) {
					t.Fatalf("batch %d has seq %d, want %d", i, b.GetSeq(), i+2)
				}
				got.Write(b.GetData())
			}
			if got.String() != tc.want || last != uint64(len(st.batches)) {
				t.Errorf("shipped %q up to seq %d; want %q up to seq %d", got.String(), last, tc.want, len(st.batches))
			}
		})
	}
}
