// Package imagestore keeps container image archives (`docker save` format)
// on the coordinator, so that nodes without a registry can fetch images a
// client pushed (JobService.PushImage) or another node uploaded
// (AgentService.UploadImage).
//
// Layout under Config.Dir:
//
//	<hex>.tar     one archive per image id (sha256:<hex>), written to a
//	              temporary file, fsynced, verified and renamed into place
//	names.json    the name -> id index, rewritten atomically on change; a
//	              name pushed by a known credential maps to
//	              {"id": ..., "owner": ...} instead of the bare id
//	.tmp-*        uploads in progress; removed on failure and at start
//
// The index is one small JSON file rather than a file per name because
// image names ("cloudml/octave:7", "host:5000/a/b@sha256:...") hold path
// separators and colons: a single file needs no escaping, and one rename
// replaces the whole index at once.
//
// Nothing from the wire becomes a path: file names come from the validated
// hex of the id only.
//
// An archive is checked in full before it is kept (archive.go), so that a
// node loading it gets exactly the image it was pushed as and nothing else:
// manifest.json lists exactly one image; its config (<hex>.json of the
// legacy layout, blobs/sha256/<hex> of the OCI layout) is in the archive
// and hashes to the id claimed; every layer it lists is there (links
// followed) and hashes to the diff id its config names; and its RepoTags
// (and index.json's image names) are none or exactly the name it is pushed
// under, compared as docker normalizes them. An archive that tags, say,
// debian:12 would retag that image on every node that loads it. A refused
// archive leaves nothing, and the error wraps ErrInvalid.
package imagestore
