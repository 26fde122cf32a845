// Package inproc runs a CloudML cluster inside the test process: a real
// coordinator and real agents (process runtime) over one in-memory gRPC
// listener, with a file:// bucket. Client-side tests and runnable examples
// use it where test/mesh would be too much; it lives apart from testutil
// because it imports the coordinator, whose own tests import testutil.
package inproc
