//go:build !unix

package archive

// noFollow is not available here; Extract removes what was there first.
const noFollow = 0
