package bucket

import "context"

// Parse parses gs://bucket[/prefix] or file:///abs/dir[/prefix].
func Parse(rawURL string) (Location, error) {
	panic("unimplemented")
}

// Open opens the bucket a URL names and returns it with the parsed location;
// Location.Key is the prefix inside the bucket the URL pointed at.
func Open(ctx context.Context, rawURL string) (Bucket, Location, error) {
	panic("unimplemented")
}
