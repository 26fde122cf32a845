package imagestore

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// Put stores the archive read from r as info.ID and points info.Name at it,
// returning the archive's size. If the id is already kept (or another Put of
// it succeeds first), r is not read and the kept size is returned. A failed
// or cancelled Put leaves nothing behind. info.Size is ignored.
func (s *Store) Put(ctx context.Context, info Info, r io.Reader) (int64, error) {
	if err := Check(info.Name, info.ID); err != nil {
		return 0, err
	}
	for {
		s.mu.Lock()
		if size, ok := s.sizes[info.ID]; ok {
			err := s.setName(info.Name, info.ID)
			s.mu.Unlock()
			return size, err
		}
		wait, busy := s.inflight[info.ID]
		if !busy {
			done := make(chan struct{})
			s.inflight[info.ID] = done
			s.mu.Unlock()
			size, err := s.write(ctx, info, r)
			s.mu.Lock()
			delete(s.inflight, info.ID)
			close(done)
			if err == nil {
				s.sizes[info.ID] = size
				err = s.setName(info.Name, info.ID)
			}
			s.mu.Unlock()
			return size, err
		}
		s.mu.Unlock()
		select { // another Put of this id is writing; use its result
		case <-wait:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// write stores r as the archive of info.ID once it checks out.
func (s *Store) write(ctx context.Context, info Info, r io.Reader) (int64, error) {
	size, err := atomicfile.Write(ctx, s.path(info.ID), r, 0o644, func(f *os.File) error { return verify(f, info.ID) })
	if err != nil {
		return 0, fmt.Errorf("store image %s: %w", info.Name, err)
	}
	return size, nil
}

// verify checks that the archive in f holds a blob whose sha256 is id: the
// image config (<hex>.json) of Docker's legacy layout, or blobs/sha256/<hex>
// of the OCI layout newer engines write.
func verify(f *os.File, id string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	want := strings.TrimPrefix(id, "sha256:")
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the archive holds no image %s (send the `docker save` archive of that image)", ErrInvalid, id)
		}
		if err != nil {
			return fmt.Errorf("%w: not a `docker save` archive: %v", ErrInvalid, err)
		}
		name := path.Clean(h.Name)
		if name != want+".json" && name != "blobs/sha256/"+want {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return fmt.Errorf("%w: read %s: %v", ErrInvalid, h.Name, err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != want {
			return fmt.Errorf("%w: %s in the archive hashes to sha256:%s, not %s", ErrInvalid, h.Name, got, id)
		}
		return nil
	}
}
