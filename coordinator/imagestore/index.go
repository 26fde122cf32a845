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

// indexEntry is a name's value in the index: its image id and who pushed
// it. It is written as the bare id when there is no owner (the index of
// older coordinators, read as it is).
type indexEntry struct {
	ID    string `json:"id"`
	Owner string `json:"owner,omitempty"`
}

func (e indexEntry) MarshalJSON() ([]byte, error) {
	if e.Owner == "" {
		return json.Marshal(e.ID)
	}
	type plain indexEntry
	return json.Marshal(plain(e))
}

func (e *indexEntry) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &e.ID); err == nil {
		return nil
	}
	type plain indexEntry
	return json.Unmarshal(data, (*plain)(e))
}

// readIndex reads the index; a missing index is empty.
func (s *Store) readIndex() (map[string]indexEntry, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]indexEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	names := map[string]indexEntry{}
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, fmt.Errorf("decode image index %s: %w (remove it to forget the names; the archives stay)", filepath.Join(s.dir, indexFile), err)
	}
	return names, nil
}

// setName points name at id (pushed by owner), saves the index and removes
// the archive the name pointed at before if no other name needs it.
// Callers hold s.mu.
func (s *Store) setName(name, id, owner string) error {
	old, had := s.names[name]
	oldOwner := s.owners[name]
	if had && old == id && oldOwner == owner {
		return nil
	}
	s.names[name] = id
	s.setOwner(name, owner)
	if err := s.writeIndex(); err != nil {
		s.setOwner(name, oldOwner)
		if had {
			s.names[name] = old
		} else {
			delete(s.names, name)
		}
		return err
	}
	if had && old == id {
		return nil
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

// setOwner records who pushed name ("" forgets it). Callers hold s.mu.
func (s *Store) setOwner(name, owner string) {
	if owner == "" {
		delete(s.owners, name)
		return
	}
	s.owners[name] = owner
}

// writeIndex replaces the index atomically. Callers hold s.mu.
func (s *Store) writeIndex() error {
	index := make(map[string]indexEntry, len(s.names))
	for name, id := range s.names {
		index[name] = indexEntry{ID: id, Owner: s.owners[name]}
	}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(s.dir, indexFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return nil
}
