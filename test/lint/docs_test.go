package lint

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// listedPackage is the part of `go list -json` this test reads.
type listedPackage struct {
	Dir, ImportPath, Name     string
	GoFiles, CgoFiles         []string
	TestGoFiles, XTestGoFiles []string
}

// TestEveryPackageHasADocComment parses every package of the module and
// wants one package comment: "Package <name> ..." for a library, any text
// ("Command <name> ...") for a main package.
func TestEveryPackageHasADocComment(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		n++
		if err := checkDoc(p); err != "" {
			t.Errorf("%s: %s", p.ImportPath, err)
		}
	}
	if n < 10 {
		t.Fatalf("go list ./... listed only %d packages", n)
	}
}

// checkDoc returns what is wrong with p's package comment, or "".
func checkDoc(p listedPackage) string {
	files := append(append([]string{}, p.GoFiles...), p.CgoFiles...)
	if len(files) == 0 { // a package of tests only
		files = append(append(files, p.TestGoFiles...), p.XTestGoFiles...)
	}
	var docs []string
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err.Error()
		}
		if text := docText(f.Doc); text != "" {
			docs = append(docs, name)
			if p.Name != "main" && !strings.HasPrefix(text, "Package "+f.Name.Name+" ") {
				return name + ": the package comment should start with \"Package " + f.Name.Name + " \", not " + firstWords(text)
			}
		}
	}
	switch len(docs) {
	case 0:
		return "no package doc comment (add a doc.go saying what the package is for)"
	case 1:
		return ""
	}
	return "package doc comments in " + strings.Join(docs, ", ") + "; keep one (in doc.go)"
}

func docText(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.TrimSpace(g.Text())
}

func firstWords(s string) string {
	if f := strings.Fields(s); len(f) > 3 {
		s = strings.Join(f[:3], " ") + "…"
	}
	return `"` + s + `"`
}

// TestCheckDoc shows checkDoc tells each mistake apart from a good package.
func TestCheckDoc(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // "" or a part of the complaint
	}{
		{"good", map[string]string{"doc.go": "// Package p does things.\npackage p\n", "p.go": "package p\n"}, ""},
		{"none", map[string]string{"p.go": "// not a doc\n\npackage p\n"}, "no package doc comment"},
		{"wrong start", map[string]string{"doc.go": "// This package does things.\npackage p\n"}, `should start with "Package p "`},
		{"two", map[string]string{"a.go": "// Package p a.\npackage p\n", "b.go": "// Package p b.\npackage p\n"}, "a.go, b.go"},
		{"main", map[string]string{"main.go": "// Command p runs.\npackage main\n"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := listedPackage{Dir: dir, Name: "p"}
			for name, src := range tt.files {
				writeFile(t, filepath.Join(dir, name), src)
				p.GoFiles = append(p.GoFiles, name)
				if strings.Contains(src, "package main") {
					p.Name = "main"
				}
			}
			sort.Strings(p.GoFiles)
			got := checkDoc(p)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkDoc = %q, want one containing %q", got, tt.want)
			}
		})
	}
}
