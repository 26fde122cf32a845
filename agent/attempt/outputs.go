package attempt

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
)

// The output directory belongs to the task, which may fill it with
// symlinks to the agent's secrets, swap a file for one while the agent
// reads, or leave a FIFO to block it. Everything the agent reads there goes
// through an os.Root opened on it: no path, symlink or "..", however
// swapped, leads outside the directory, so a task can never have the agent
// upload (or report as a metric) a file it cannot read itself.

// maxOutputDepth bounds the directory nesting the upload walks.
const maxOutputDepth = 64

// openOutput opens the output directory as a root.
func openOutput(dir string) (*os.Root, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open output dir: %w", err)
	}
	return r, nil
}

// openRegular opens rel beneath root for reading, refusing anything but a
// regular file (O_NONBLOCK: a FIFO cannot hold the open up).
func openRegular(root *os.Root, rel string) (*os.File, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", rel)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// listOutputs returns the regular files beneath root (slash-separated
// paths) and a warning for each entry skipped: not a regular file, a name
// the agent writes itself, or nested too deep.
func listOutputs(root *os.Root) (files, warnings []string, err error) {
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > maxOutputDepth {
			warnings = append(warnings, fmt.Sprintf("output %s is nested more than %d levels deep; not uploaded", dir, maxOutputDepth))
			return nil
		}
		f, err := root.Open(dir)
		if err != nil {
			return err
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return err
		}
		slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range entries {
			rel := path.Join(dir, e.Name())
			if dir == "." {
				rel = e.Name()
			}
			switch {
			case e.IsDir():
				if err := walk(rel, depth+1); err != nil {
					return err
				}
			case !e.Type().IsRegular():
				warnings = append(warnings, fmt.Sprintf("output %s is not a regular file; not uploaded", rel))
			case reserved[rel]:
				warnings = append(warnings, fmt.Sprintf("output %s clashes with a file the agent writes; not uploaded", rel))
			default:
				files = append(files, rel)
			}
		}
		return nil
	}
	if err := walk(".", 0); err != nil {
		return nil, nil, err
	}
	return files, warnings, nil
}

// isMissing reports whether err says a file is not there.
func isMissing(err error) bool { return errors.Is(err, os.ErrNotExist) }
