package bucket

import (
	"context"
	"fmt"
)

// Open opens the bucket a URL names and returns it with the parsed location;
// Location.Key is the prefix inside the bucket the URL pointed at. Keys given
// to the returned Bucket are relative to the bucket root, not to that prefix.
func Open(ctx context.Context, rawURL string) (Bucket, Location, error) {
	loc, err := Parse(rawURL)
	if err != nil {
		return nil, Location{}, err
	}
	b, err := OpenAt(ctx, loc)
	if err != nil {
		return nil, Location{}, err
	}
	return b, loc, nil
}

// OpenAt opens the bucket of a parsed location (loc.Key is ignored). A gs
// bucket must exist (else the error wraps ErrNotExist); a file directory is
// created when missing.
func OpenAt(ctx context.Context, loc Location) (Bucket, error) {
	switch loc.Scheme {
	case "gs":
		return openGCS(ctx, loc.Bucket)
	case "file":
		return openFile(ctx, loc.Bucket)
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q; %s", ErrBadURL, loc.Scheme, acceptedForms)
	}
}
