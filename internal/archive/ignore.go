package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// rule is one line of an ignore file.
type rule struct {
	pattern  string
	negate   bool // "!pattern": re-include what an earlier rule excluded
	dirOnly  bool // "pattern/": only directories
	anchored bool // "/pattern" or "a/b": matched against the whole relative path
}

// ignore is a parsed .cloudmlignore; the last matching rule wins, as in git.
type ignore struct {
	rules []rule
}

// loadIgnore reads the ignore file at name; a missing file ignores nothing.
func loadIgnore(name string) (*ignore, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return &ignore{}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseIgnore(string(data))
}

// parseIgnore parses gitignore-like patterns: one per line, '#' comments,
// blank lines, "dir/" for directories only, a leading '/' to anchor to the
// root, '!' to negate, and path.Match globs.
func parseIgnore(text string) (*ignore, error) {
	ig := &ignore{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r rule
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, line[1:]
		} else if strings.HasPrefix(line, `\`) {
			line = line[1:] // "\#file" or "\!file"
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		if strings.HasPrefix(line, "/") {
			r.anchored, line = true, strings.TrimLeft(line, "/")
		}
		if strings.Contains(line, "/") {
			r.anchored = true
		}
		if line == "" {
			continue
		}
		if _, err := path.Match(line, ""); err != nil {
			return nil, fmt.Errorf("%s:%d: bad pattern %q: %w", IgnoreFile, n, line, err)
		}
		r.pattern = line
		ig.rules = append(ig.rules, r)
	}
	return ig, sc.Err()
}

// match reports whether the slash-separated relative path rel is ignored.
func (ig *ignore) match(rel string, isDir bool) bool {
	ignored := false
	for _, r := range ig.rules {
		if r.negate != ignored {
			continue // this rule cannot change the outcome
		}
		if r.matches(rel, isDir) {
			ignored = !r.negate
		}
	}
	return ignored
}

func (r rule) matches(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if ok, _ := path.Match(r.pattern, rel); ok {
		return true
	}
	if r.anchored {
		return false
	}
	ok, _ := path.Match(r.pattern, path.Base(rel))
	return ok
}
