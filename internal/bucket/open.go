package bucket

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"
)

// Options changes how buckets are opened; the zero value opens them as Open
// does (gs buckets with Application Default Credentials).
type Options struct {
	// GCSTokens, when set, gives each gs bucket's client its token source,
	// by bucket name, instead of Application Default Credentials: every
	// request carries "Authorization: Bearer <token>", to an emulator
	// (STORAGE_EMULATOR_HOST) too. nil means the default credentials.
	GCSTokens func(bucket string) oauth2.TokenSource
	// AuthHint is added to the error of a gs bucket whose open the storage
	// API refuses (401, 403) or whose client finds no credentials: it says
	// where this program's credentials come from and how to change that.
	AuthHint string
}

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
	return OpenAtWith(ctx, loc, Options{})
}

// OpenAtWith is OpenAt with opts.
func OpenAtWith(ctx context.Context, loc Location, opts Options) (Bucket, error) {
	switch loc.Scheme {
	case "gs":
		return openGCS(ctx, loc.Bucket, opts)
	case "file":
		return openFile(ctx, loc.Bucket)
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q; %s", ErrBadURL, loc.Scheme, acceptedForms)
	}
}
