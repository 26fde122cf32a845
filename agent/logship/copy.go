package logship

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// readBuf is the read buffer per stream; a line longer than this is split
// (each piece completed with a "\n").
const readBuf = 256 << 10

// Copy reads r until EOF, hands whole lines to the shipper, and writes the
// same bytes to tee (if not nil). It never allocates or calls the shipper
// per line: each read chunk is cut at its last newline. A final partial
// line is completed with a "\n". Run one Copy per stream, concurrently.
// It returns the read error, or the first tee error (teeing then stops but
// reading goes on, so the task is never blocked on a full pipe).
func (s *Shipper) Copy(stream cloudmlv1.LogStream, r io.Reader, tee io.Writer) error {
	growPipe(r)
	buf := make([]byte, readBuf)
	var teeErr error
	emit := func(b []byte, newline bool) {
		s.add(stream, b, newline)
		// b holds whole lines, or (newline set) part of one; trailing empty
		// lines keep the tail.
		line := bytes.TrimRight(b, "\n")
		if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
			line = line[i+1:]
		}
		if len(line) > 0 {
			s.setTail(stream, line)
		}
		if tee == nil || teeErr != nil {
			return
		}
		if _, err := tee.Write(b); err != nil {
			teeErr = fmt.Errorf("write local log copy: %w", err)
			return
		}
		if newline {
			if _, err := tee.Write([]byte{'\n'}); err != nil {
				teeErr = fmt.Errorf("write local log copy: %w", err)
			}
		}
	}
	carry := 0 // buf[:carry] is a partial line
	for {
		n, err := r.Read(buf[carry:])
		if n > 0 {
			end := carry + n
			if i := bytes.LastIndexByte(buf[carry:end], '\n'); i >= 0 {
				cut := carry + i + 1
				emit(buf[:cut], false)
				carry = copy(buf, buf[cut:end])
			} else {
				carry = end
				if carry == len(buf) {
					emit(buf, true)
					carry = 0
				}
			}
		}
		if err != nil {
			if carry > 0 {
				emit(buf[:carry], true)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return teeErr
			}
			return fmt.Errorf("read %s: %w", streamName(stream), err)
		}
	}
}

func streamName(s cloudmlv1.LogStream) string {
	if s == cloudmlv1.LogStream_LOG_STREAM_STDERR {
		return "stderr"
	}
	return "stdout"
}
