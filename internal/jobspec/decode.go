package jobspec

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder turns yaml.Nodes into values, collecting errors with their lines.
type decoder struct {
	file  string
	errs  []*Error
	lines map[string]int // field path -> line where it is set
	root  int            // line of the top-level mapping
}

func (d *decoder) failf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// typeErr reports a value of the wrong type for field.
func (d *decoder) typeErr(n *yaml.Node, field, want string) {
	d.failf(n, field, "field %q: want %s, got %s", field, want, describe(n))
}

// lineOf returns the line of field, of its closest parent that was set, or
// of the document.
func (d *decoder) lineOf(field string) int {
	for f := field; f != ""; {
		if l, ok := d.lines[f]; ok {
			return l
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return d.root
}

// describe names a node for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join2(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// entries calls fn for each key of the mapping n (at path), reporting
// non-scalar and duplicate keys. Null values are passed on.
func (d *decoder) entries(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.typeErr(n, path, "a mapping")
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.failf(k, path, "field %q: keys must be plain names, got %s", path, describe(k))
			continue
		}
		field := join2(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.failf(k, field, "duplicate field %q (first at line %d)", field, first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[field] = k.Line
		fn(k.Value, k, v)
	}
}

// fields is entries for a mapping with a fixed set of keys: an unknown key
// is an error with a suggestion. Null values are skipped.
func (d *decoder) fields(n *yaml.Node, path string, known []string, fn func(key string, v *yaml.Node)) {
	d.entries(n, path, func(key string, k, v *yaml.Node) {
		if !contains(known, key) {
			msg := fmt.Sprintf("unknown field %q", key)
			if path != "" {
				msg += " in " + path
			}
			if s := suggest(key, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.failf(k, join2(path, key), "%s", msg)
			return
		}
		if !isNull(v) {
			fn(key, v)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str decodes any scalar as its text.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.typeErr(n, field, "a string")
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// integer decodes a whole number in [lo, hi].
func (d *decoder) integer(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!str" || n.Decode(&v) != nil {
		d.typeErr(n, field, "an integer")
		return 0, false
	}
	if v < lo || v > hi {
		d.failf(n, field, "field %q: %d is out of range [%d, %d]", field, v, lo, hi)
		return 0, false
	}
	return v, true
}

func (d *decoder) float(n *yaml.Node, field string) (float64, bool) {
	var v float64
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!str" || n.Decode(&v) != nil {
		d.typeErr(n, field, "a number")
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
		d.typeErr(n, field, "true or false")
		return false, false
	}
	return v, true
}

var memoryRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?$`)

var memoryUnits = map[string]float64{
	"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// parseMemory reads a byte count: "536870912", "512Mi", "1.5G".
func parseMemory(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("want bytes, or a number with a suffix Ki, Mi, Gi, K, M or G, got %q", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	v := math.Round(f * memoryUnits[m[2]])
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// ParseBytes reads a byte count as a spec's resources.memory does:
// "536870912", "512Mi", "1.5G" (Ki, Mi, Gi, Ti are powers of 1024; K, M,
// G, T of 1000).
func ParseBytes(s string) (int64, error) {
	return parseMemory(s)
}

// FormatBytes writes n as ParseBytes reads it: with the largest binary
// suffix that divides it, else in bytes.
func FormatBytes(n int64) string {
	for _, u := range []string{"Ti", "Gi", "Mi", "Ki"} {
		if d := int64(memoryUnits[u]); n != 0 && n%d == 0 {
			return strconv.FormatInt(n/d, 10) + u
		}
	}
	return strconv.FormatInt(n, 10)
}

// splitCommand splits a command line on white space, honouring 'single'
// and "double" quotes and backslash escapes outside single quotes.
func splitCommand(s string) ([]string, error) {
	var (
		args   []string
		cur    bytes.Buffer
		inWord bool
		quote  rune
		escape bool
	)
	for _, c := range s {
		switch {
		case escape:
			cur.WriteRune(c)
			escape = false
		case c == '\\' && quote != '\'':
			escape, inWord = true, true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if escape {
		return nil, fmt.Errorf("trailing backslash")
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// suggest returns the known name closest to s, if within edit distance 2.
func suggest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := levenshtein(strings.ToLower(s), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
