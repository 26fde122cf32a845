// Package lint tests the rules `make lint` enforces on the repository: that
// its check-tidy and staticcheck targets fail on an untidy go.mod and on a
// staticcheck finding (run against a one-file module in a temporary
// directory, with the same Makefile and the tools pinned in tools/go.mod),
// and that every package has a package doc comment.
package lint
