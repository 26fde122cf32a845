package imagestore

import (
	"context"
	"fmt"
	"io"
	"os"

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
			err := s.setName(info.Name, info.ID, info.Owner)
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
				err = s.setName(info.Name, info.ID, info.Owner)
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
	size, err := atomicfile.Write(ctx, s.path(info.ID), r, 0o644, func(f *os.File) error { return checkArchive(f, info.Name, info.ID) })
	if err != nil {
		return 0, fmt.Errorf("store image %s: %w", info.Name, err)
	}
	return size, nil
}
