package stage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Inputs are a job's staged code and data.
type Inputs struct {
	// Code is the staged code directory; "" when the job has no code.
	Code string
	// Data maps each data name to its staged directory.
	Data map[string]string
}

// StageInputs stages a job's code (none when code has no URL) and every
// data source, in name order. A data name must be a plain file name. The
// errors say what to do next.
func (c *Cache) StageInputs(ctx context.Context, code *cloudmlv1.Source, data map[string]*cloudmlv1.Source) (Inputs, error) {
	in := Inputs{Data: map[string]string{}}
	if code.GetUrl() != "" {
		dir, err := c.Stage(ctx, code)
		if err != nil {
			return Inputs{}, fmt.Errorf("stage code: %w%s", err, hint(err, "was it uploaded? resubmit with --code DIR"))
		}
		in.Code = dir
	}
	names := make([]string, 0, len(data))
	for name := range data {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !filepath.IsLocal(name) || strings.ContainsRune(name, filepath.Separator) {
			return Inputs{}, fmt.Errorf("stage data %q: a data name must be a plain file name", name)
		}
		dir, err := c.Stage(ctx, data[name])
		if err != nil {
			return Inputs{}, fmt.Errorf("stage data %q: %w%s", name, err, hint(err, "check the data URL and that the objects are uploaded"))
		}
		in.Data[name] = dir
	}
	return in, nil
}

// hint is what to do about a staging error, or "".
func hint(err error, missing string) string {
	switch {
	case errors.Is(err, bucket.ErrNotExist):
		return ": " + missing
	case errors.Is(err, archive.ErrUnsafePath):
		return ": the source holds paths that escape its directory; repack it"
	}
	return ""
}
