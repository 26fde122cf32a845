// Package archive packs a code directory into a deterministic tar.gz (so the
// same code has the same digest and is uploaded once) and extracts archives
// safely into a staging directory.
//
// The client packs the job's code with Pack or PackFile and uploads it by
// digest; the agent stages it with Extract, which refuses any entry that
// would write outside the destination.
package archive
