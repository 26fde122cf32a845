package store

import "encoding/binary"

// jobPrefix is the job id followed by the NUL that ends it.
func jobPrefix(job string) []byte {
	k := make([]byte, 0, len(job)+17)
	k = append(k, job...)
	return append(k, 0)
}

func taskKey(job string, task int32) []byte {
	return binary.BigEndian.AppendUint32(jobPrefix(job), uint32(task))
}

func attemptKey(job string, task, attempt int32) []byte {
	return binary.BigEndian.AppendUint32(taskKey(job, task), uint32(attempt))
}

func logKey(job string, task, attempt int32, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(attemptKey(job, task, attempt), seq)
}

func encodeSeq(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

func decodeSeq(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
