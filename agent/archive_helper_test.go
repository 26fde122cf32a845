package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

type testArchive struct {
	data   []byte
	digest string
}

// tgzHostile is an archive with an entry that climbs out of its directory.
func tgzHostile(t *testing.T) testArchive {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range []string{"ok.sh", "../../escape.sh"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: 2, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("x\n"))
	}
	tw.Close()
	zw.Close()
	sum := sha256.Sum256(buf.Bytes())
	return testArchive{data: buf.Bytes(), digest: "sha256:" + hex.EncodeToString(sum[:])}
}
