package main

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLineCounter(t *testing.T) {
	// Lines 1..5 of seq 6 (6 lost); 2 three times, one line not of seq, one
	// past n (4 duplicated); a prefix of attempt 2, blanks, and a last line
	// without its newline.
	const out = "[0] 1\n[0] 2\n2 \n[0] x\n[0] 7\n[0#2] 3\n[0] 2\n4\r\n5"
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(out),
		"one byte": iotest.OneByteReader(strings.NewReader(out)),
	} {
		c := newLineCounter(6)
		if err := c.read(r); err != nil {
			t.Fatal(err)
		}
		first, last, distinct, lost, dup := c.result()
		if first.IsZero() || last.Before(first) {
			t.Errorf("%s: first %v, last %v", name, first, last)
		}
		if distinct != 5 || lost != 1 || dup != 4 {
			t.Errorf("%s: distinct %d, lost %d, dup %d; want 5, 1, 4", name, distinct, lost, dup)
		}
	}
}

func BenchmarkLineCounter(b *testing.B) {
	var sb strings.Builder
	const n = 1000000
	for i := 1; i <= n; i++ {
		sb.WriteString("[0] ")
		sb.WriteString(strconv.Itoa(i))
		sb.WriteByte('\n')
	}
	out := sb.String()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		c := newLineCounter(n)
		if err := c.read(strings.NewReader(out)); err != nil {
			b.Fatal(err)
		}
		if _, _, d, _, _ := c.result(); d != n {
			b.Fatal(d)
		}
	}
}
