// Package stage fetches a task's code and data from a bucket into the node's
// content-addressed cache. An archive is keyed by its digest and a prefix by
// the listing of its objects, so an attempt that needs what is already
// cached downloads nothing. Every path that comes from the bucket is checked
// before it touches the disk: a hostile archive entry or object key fails
// with an error wrapping archive.ErrUnsafePath and leaves nothing behind.
package stage
