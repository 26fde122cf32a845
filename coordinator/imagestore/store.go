package imagestore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/cloudml/cloudml/internal/atomicfile"
	"github.com/hashicorp/go-hclog"
)

var (
	// ErrInvalid means an image name or id is malformed, or an archive does
	// not hold the image its id names.
	ErrInvalid = errors.New("invalid image")
	// ErrNotFound means the store keeps no image under that name.
	ErrNotFound = errors.New("image not found")
)

// Config configures a Store.
type Config struct {
	// Dir holds the archives and the index; it is created if missing.
	Dir string
	// Logger receives the store's logs; nil means none.
	Logger hclog.Logger
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("imagestore: dir is required")
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Info describes a kept image.
type Info struct {
	// Name is the image reference the user gave.
	Name string
	// ID is the image id, "sha256:" and 64 hex digits.
	ID string
	// Size is the archive's size in bytes.
	Size int64
	// Owner is the credential that pushed the name ("" when a node uploaded
	// it); the coordinator lets only it, an admin, or a forced push replace it.
	Owner string
}

// Store keeps image archives by id and maps names to ids.
type Store struct {
	dir string
	log hclog.Logger

	mu       sync.Mutex               // protects names, owners, sizes, inflight
	names    map[string]string        // name -> id
	owners   map[string]string        // name -> who pushed it, when known
	sizes    map[string]int64         // id -> archive size, for archives on disk
	inflight map[string]chan struct{} // id -> closed when that Put ends
}

var (
	idRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,254}$`)
)

// ValidID reports whether id is "sha256:" followed by 64 lowercase hex digits.
func ValidID(id string) bool { return idRE.MatchString(id) }

// ValidName reports whether name looks like an image reference.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Check validates a name and id from the wire; errors are ErrInvalid.
func Check(name, id string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: name %q is not an image reference", ErrInvalid, name)
	}
	if !ValidID(id) {
		return fmt.Errorf("%w: id %q of %s is not sha256: and 64 hex digits", ErrInvalid, id, name)
	}
	return nil
}

// New opens the store in cfg.Dir: it removes uploads a crash interrupted,
// forgets names whose archive is gone and removes archives no name points
// at.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create image dir: %w", err)
	}
	s := &Store{dir: cfg.Dir, log: cfg.Logger, names: map[string]string{}, owners: map[string]string{}, sizes: map[string]int64{}, inflight: map[string]chan struct{}{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read image dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, atomicfile.TempPrefix):
			if err := os.Remove(filepath.Join(cfg.Dir, name)); err != nil {
				return nil, fmt.Errorf("remove interrupted upload: %w", err)
			}
		case strings.HasSuffix(name, ".tar") && ValidID("sha256:"+strings.TrimSuffix(name, ".tar")):
			fi, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("stat %s: %w", name, err)
			}
			s.sizes["sha256:"+strings.TrimSuffix(name, ".tar")] = fi.Size()
		}
	}
	names, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	for name, e := range names {
		if _, ok := s.sizes[e.ID]; ok && ValidName(name) {
			s.names[name] = e.ID
			s.setOwner(name, e.Owner)
		}
	}
	for id := range s.sizes {
		if s.referenced(id) {
			continue
		}
		// No name points at it: a crash came between writing the archive
		// and naming it, or between forgetting its last name and removing
		// it. Nothing can ask for it by name.
		if err := os.Remove(s.path(id)); err != nil {
			return nil, fmt.Errorf("remove unnamed image archive: %w", err)
		}
		delete(s.sizes, id)
		s.log.Info("unnamed image archive removed", "image_id", id)
	}
	s.log.Debug("image store opened", "dir", cfg.Dir, "images", len(s.sizes), "names", len(s.names))
	return s, nil
}

// path is the archive file of a validated id.
func (s *Store) path(id string) string {
	return filepath.Join(s.dir, strings.TrimPrefix(id, "sha256:")+".tar")
}

// Lookup returns what the store keeps under name.
func (s *Store) Lookup(name string) (Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.names[name]
	if !ok {
		return Info{}, false
	}
	return Info{Name: name, ID: id, Size: s.sizes[id], Owner: s.owners[name]}, true
}

// HasID reports whether the archive of id is kept.
func (s *Store) HasID(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sizes[id]
	return ok
}

// Tag points info.Name at the kept image info.ID, pushed by info.Owner (a
// push of an image the store already has under another name, or a retag).
func (s *Store) Tag(info Info) error {
	if err := Check(info.Name, info.ID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sizes[info.ID]; !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, info.ID)
	}
	return s.setName(info.Name, info.ID, info.Owner)
}

// Open opens the archive kept under name.
func (s *Store) Open(name string) (io.ReadCloser, Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // held so a retag cannot remove the file first
	id, ok := s.names[name]
	if !ok {
		return nil, Info{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	f, err := os.Open(s.path(id))
	if err != nil {
		return nil, Info{}, fmt.Errorf("open image %s: %w", name, err)
	}
	return f, Info{Name: name, ID: id, Size: s.sizes[id]}, nil
}

// List returns every kept name, sorted.
func (s *Store) List() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.names))
	for name, id := range s.names {
		out = append(out, Info{Name: name, ID: id, Size: s.sizes[id], Owner: s.owners[name]})
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Delete forgets name and removes its archive unless another name points
// at it; freed is the archive's size if it went, else 0. A reader that
// opened the archive before keeps reading it.
func (s *Store) Delete(name string) (info Info, freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.names[name]
	if !ok {
		return Info{}, 0, fmt.Errorf("%w: no image named %s", ErrNotFound, name)
	}
	info = Info{Name: name, ID: id, Size: s.sizes[id], Owner: s.owners[name]}
	delete(s.names, name)
	delete(s.owners, name)
	if err := s.writeIndex(); err != nil {
		s.names[name] = id
		s.setOwner(name, info.Owner)
		return Info{}, 0, err
	}
	if s.referenced(id) {
		return info, 0, nil
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		// The name is gone; New removes the file at the next start.
		s.log.Warn("remove deleted image failed", "image_id", id, "error", err)
		return info, 0, nil
	}
	delete(s.sizes, id)
	return info, info.Size, nil
}
