package main

import (
	"bufio"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// seedObject writes an object of size bytes straight into the fake GCS
// server's disk backend (the server reads objects from disk on every
// request), so it never passes through the server's memory. variant makes
// the content, and so the etag, differ between runs.
func (s *swarmBench) seedObject(name string, size int64, variant uint64) error {
	path := filepath.Join(s.gcsRoot, url.PathEscape(benchBucket), name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("seed %s: %w", name, err)
	}
	defer f.Close()
	crc, sum := crc32.New(crc32.MakeTable(crc32.Castagnoli)), md5.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, crc, sum), 1<<20)
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(variant, 42))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	for off := int64(0); off < size; off += int64(len(block)) {
		binary.LittleEndian.PutUint64(block, uint64(off)^variant<<40) // no two blocks alike
		n := min(int64(len(block)), size-off)
		if _, err := w.Write(block[:n]); err != nil {
			return fmt.Errorf("seed %s: %w", name, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("seed %s: %w", name, err)
	}
	now := time.Now().UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	md5sum := base64.StdEncoding.EncodeToString(sum.Sum(nil))
	// The backend's metadata: its ObjectAttrs struct as JSON.
	meta, err := json.Marshal(map[string]any{
		"StorageClass": "STANDARD", "ContentType": "application/octet-stream",
		"Crc32c": base64.StdEncoding.EncodeToString(crc.Sum(nil)), "Md5Hash": md5sum, "Etag": md5sum,
		"Created": now, "Updated": now, "Generation": time.Now().UnixMicro(),
	})
	if err != nil {
		return err
	}
	// The backend keeps metadata in the user.metadata xattr where the file
	// system has xattrs, else in NAME.metadata beside the object.
	err = syscall.Setxattr(path, "user.metadata", meta, 0)
	if errors.Is(err, syscall.ENOTSUP) {
		err = os.WriteFile(path+".metadata", meta, 0o600)
	}
	if err != nil {
		return fmt.Errorf("seed %s metadata: %w", name, err)
	}
	return f.Close()
}
