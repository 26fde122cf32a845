package store

import (
	"fmt"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// BenchmarkAppendLogs stores four 512 KiB batches per call, as an agent
// flushing a fast writer does, and reports the throughput.
func BenchmarkAppendLogs(b *testing.B) {
	const batchSize, perCall, callsPerAttempt = 512 << 10, 4, 64
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, batchSize)
	for i := range data {
		data[i] = byte('0' + i%10)
		if i%7 == 6 {
			data[i] = '\n'
		}
	}
	b.SetBytes(batchSize * perCall)
	b.ResetTimer()
	seq := uint64(0)
	for i := 0; b.Loop(); i++ {
		attempt := int32(1 + i/callsPerAttempt)
		if i%callsPerAttempt == 0 {
			seq = 0
		}
		batches := make([]*cloudmlv1.LogBatch, perCall)
		for k := range batches {
			seq++
			batches[k] = &cloudmlv1.LogBatch{Seq: seq, Data: data}
		}
		acked, stored, err := s.AppendLogs("bench-000001", 0, attempt, batches)
		if err != nil || stored != perCall || acked != seq {
			b.Fatal(fmt.Errorf("append: acked %d stored %d: %w", acked, stored, err))
		}
	}
}
