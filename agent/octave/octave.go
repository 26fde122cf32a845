package octave

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudml/cloudml/internal/atomicfile"
)

// FileName is the name Install gives the startup file.
const FileName = "octaverc"

// EnvVar is the variable Octave (7.x) reads the site startup file's path
// from. It replaces only the site file, which the CloudML file runs first,
// and leaves OCTAVE_INITFILE (the user's ~/.octaverc) alone.
const EnvVar = "OCTAVE_SITE_INITFILE"

//go:embed octaverc
var initFile []byte

// InitFile returns the content of the startup file.
func InitFile() []byte { return bytes.Clone(initFile) }

// Env returns the environment variables that make octave and octave-cli
// load the startup file at path, as seen by the Octave process (a path
// inside the container for a container task). path should be absolute:
// Octave resolves it from the task's working directory.
func Env(path string) []string { return []string{EnvVar + "=" + path} }

// Install writes the startup file into dir, creating dir if needed, and
// returns Env for its absolute path. A file already there with the same
// content is left untouched, so Install is cheap to call before every task;
// a stale one is replaced atomically.
func Install(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("octave init file dir %q: %w", dir, err)
	}
	path := filepath.Join(abs, FileName)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, initFile) {
		return Env(path), nil
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create octave init file dir: %w", err)
	}
	if err := replace(path, initFile, 0o644); err != nil {
		return nil, fmt.Errorf("install octave init file: %w", err)
	}
	return Env(path), nil
}

// replace writes data at path through a temporary file renamed over it,
// without fsync: Install compares the file at every start and rewrites
// one that a crash left empty or torn, so durability buys nothing. On a
// new droplet these were the agent's first fsyncs, which wait for the
// agent binary just downloaded to reach the disk (up to 90 ms in the
// DigitalOcean bench's traces); the next fsync on the way to registering
// (the node certificate's) now pays most of that instead.
func replace(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), atomicfile.TempPrefix+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
