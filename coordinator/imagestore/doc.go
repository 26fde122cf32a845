// Package imagestore keeps container image archives (`docker save` format)
// on the coordinator, so that nodes without a registry can fetch images a
// client pushed (JobService.PushImage) or another node uploaded
// (AgentService.UploadImage).
//
// Layout under Config.Dir:
//
//	<hex>.tar     one archive per image id (sha256:<hex>), written to a
//	              temporary file, fsynced, verified and renamed into place
//	names.json    the name -> id index, rewritten atomically on change
//	.tmp-*        uploads in progress; removed on failure and at start
//
// The index is one small JSON file rather than a file per name because
// image names ("cloudml/octave:7", "host:5000/a/b@sha256:...") hold path
// separators and colons: a single file needs no escaping, and one rename
// replaces the whole index at once.
//
// Nothing from the wire becomes a path: file names come from the validated
// hex of the id only, and the archive must contain a blob whose sha256 is
// that id (the image config of the legacy layout, or a blob of the OCI
// layout), so an id always names what its file holds.
package imagestore
