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
