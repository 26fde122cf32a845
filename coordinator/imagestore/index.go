package imagestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// indexFile is the name -> id index.
const indexFile = "names.json"

// readIndex reads the index; a missing index is empty.
func (s *Store) readIndex() (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	names := map[string]string{}
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, fmt.Errorf("decode image index %s: %w (remove it to forget the names; the archives stay)", filepath.Join(s.dir, indexFile), err)
	}
	return names, nil
}

// setName points name at id, saves the index and removes the archive the
// name pointed at before if no other name needs it. Callers hold s.mu.
func (s *Store) setName(name, id string) error {
	old, had := s.names[name]
	if had && old == id {
		return nil
	}
	s.names[name] = id
	if err := s.writeIndex(); err != nil {
		if had {
			s.names[name] = old
		} else {
			delete(s.names, name)
		}
		return err
	}
	if had && !s.referenced(old) {
		if err := os.Remove(s.path(old)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove replaced image failed", "image_id", old, "error", err)
		}
		delete(s.sizes, old)
		s.log.Info("replaced image removed", "image", name, "image_id", old)
	}
	return nil
}

// referenced reports whether a name points at id. Callers hold s.mu.
func (s *Store) referenced(id string) bool {
	for _, v := range s.names {
		if v == id {
			return true
		}
	}
	return false
}

// writeIndex replaces the index atomically. Callers hold s.mu.
func (s *Store) writeIndex() error {
	data, err := json.MarshalIndent(s.names, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(s.dir, indexFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return nil
}
