package logship

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// chunkReader returns its chunks one Read at a time, then io.EOF: it sets
// where Copy's reads end.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func chunks(c ...string) *chunkReader { return &chunkReader{chunks: c} }

// copyStdout runs one Copy of stdout through a Shipper into a fake store
// and returns the store's stdout, the stdout tail and Copy's error.
func copyStdout(t *testing.T, r io.Reader, tee io.Writer) (stored, tail string, err error) {
	t.Helper()
	st := &store{}
	cfg := fastConfig(t, st)
	cfg.FlushInterval = time.Hour
	s := New(context.Background(), cfg)
	err = s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, r, tee)
	if _, cerr := s.Close(context.Background()); cerr != nil {
		t.Fatalf("Close: %v", cerr)
	}
	return st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT], s.Tail(cloudmlv1.LogStream_LOG_STREAM_STDOUT), err
}

// Copy hands the shipper and the tee the same bytes (each partial line
// completed with a newline) and keeps the last non-empty line as the tail.
func TestCopyTeeAndTail(t *testing.T) {
	long := strings.Repeat("y", readBuf+5)
	for _, tc := range []struct {
		name     string
		in       *chunkReader
		want     string // what the store and the tee get
		wantTail string
	}{
		{"whole lines", chunks("hello\nworld\n"), "hello\nworld\n", "world"},
		{"an empty line first", chunks("\nlast\n"), "\nlast\n", "last"},
		{"a partial last line", chunks("a\nb"), "a\nb\n", "b"},
		{"a line over two reads", chunks("ab", "c\nde", "f\n"), "abc\ndef\n", "def"},
		{"a line longer than the read buffer", chunks(long), long[:readBuf] + "\n" + long[readBuf:] + "\n", "yyyyy"},
		{"a read starting with the newline of the line carried", chunks("ab", "\n"+long[:readBuf-3], "yyyy\n"), "ab\n" + long[:readBuf] + "\n" + "y\n", "y"},
		{"a long tail cut to 512 bytes", chunks(strings.Repeat("z", 600) + "\n"), strings.Repeat("z", 600) + "\n", strings.Repeat("z", 512)},
		{"only newlines", chunks("\n\n"), "\n\n", ""},
		{"an empty last line", chunks("x\n\n"), "x\n\n", "x"},
		{"empty lines in the last read", chunks("x\n", "\n\n"), "x\n\n\n", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tee strings.Builder
			stored, tail, err := copyStdout(t, tc.in, &tee)
			if err != nil {
				t.Errorf("Copy = %v, want nil", err)
			}
			if stored != tc.want || tee.String() != tc.want {
				t.Errorf("stored %q, tee %q; want %q in both", stored, tee.String(), tc.want)
			}
			if tail != tc.wantTail {
				t.Errorf("tail = %q, want %q", tail, tc.wantTail)
			}
		})
	}
}

// failingWriter fails its write number failAt (from 1) and records the
// writes before it; it is not called again after failing.
type failingWriter struct {
	t      *testing.T
	failAt int
	writes []string
	failed bool
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.failed {
		w.t.Errorf("tee written again after it failed: %q", p)
	}
	if len(w.writes)+1 == w.failAt {
		w.failed = true
		return 0, errDiskFull
	}
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// A failing tee stops teeing but not shipping, and Copy reports it.
func TestCopyTeeFails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         *chunkReader
		failAt     int
		wantWrites []string
	}{
		{"on the first write", chunks("a\n", "b\n"), 1, nil},
		{"on a later write", chunks("a\n", "b\n", "c\n"), 2, []string{"a\n"}},
		{"on the newline Copy adds", chunks("a\nb"), 3, []string{"a\n", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tee := &failingWriter{t: t, failAt: tc.failAt}
			want := strings.Join(tc.in.chunks, "")
			if !strings.HasSuffix(want, "\n") {
				want += "\n"
			}
			stored, _, err := copyStdout(t, tc.in, tee)
			if !errors.Is(err, errDiskFull) {
				t.Errorf("Copy = %v, want the tee's error", err)
			}
			if stored != want {
				t.Errorf("stored %q, want %q", stored, want)
			}
			if diff := cmp.Diff(tc.wantWrites, tee.writes); diff != "" {
				t.Errorf("tee writes (-want +got):\n%s", diff)
			}
		})
	}
}
