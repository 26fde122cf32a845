// Package grpcopt holds the gRPC transport settings every CloudML process
// shares, so the coordinator, agents and clients tune their connections in
// one place.
//
// Logs and images are bulk streams. With gRPC's defaults (64 KiB initial
// windows grown by BDP estimation, 32 KiB read and write buffers) a 512 KiB
// log batch crosses each hop in many small windows and syscalls. Fixed 4 MiB
// stream and 16 MiB connection windows with 256 KiB buffers took `make
// bench` row (b), one task's 1,000,000 lines through `logs -f`, from a median
// 0.42 to 0.58 of the rate of writing them to a file, and submit to last line
// from ~78 to ~70 ms (2 cores, medians of 3 runs of 5).
//
// The windows bound what a receiver buffers for a peer that sends faster
// than it reads: at most 4 MiB per stream and 16 MiB per connection.
//
// The coordinator's own buffers stay at 32 KiB: it holds one connection per
// node, and at 1,000 nodes 256 KiB buffers were most of its memory (each
// connection's reader, and the write buffer every busy connection takes from
// gRPC's pool: 214 MiB of a 308 MiB heap, peak RSS 737 MiB; with 32 KiB,
// 407 MiB, make bench-cp). Bigger ones buy nothing since every connection is
// TLS: crypto/tls reads and writes one record (at most 16 KiB) per syscall
// whatever the buffer above it, and row (b) measured the same within noise.
//
// Message sizes come from here too: MaxMsgBytes is both the most the
// coordinator sends (Server) and the most an agent or client receives
// (Dial), so no message the coordinator can send is one its peer refuses.
// A peer that refused one would lose its session on every retry: an agent
// that could not receive a 5 MiB Assignment reconnected every ~100 ms and
// ran nothing else. The coordinator's job spec limits keep every
// Assignment far below it (coordinator.Limits).
package grpcopt

import "google.golang.org/grpc"

// MaxMsgBytes is the largest gRPC message the coordinator sends and its
// agents and clients receive. What the coordinator receives is bounded by
// its own, smaller, request limit.
const MaxMsgBytes = 64 << 20

const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
	bufferSize   = 256 << 10 // agents' and clients' one connection
	serverBuffer = 32 << 10  // each of the coordinator's connections
)

// Server returns the transport options of a gRPC server, sending messages
// of up to MaxMsgBytes.
func Server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.WriteBufferSize(serverBuffer),
		grpc.ReadBufferSize(serverBuffer),
		grpc.MaxSendMsgSize(MaxMsgBytes),
	}
}

// Dial returns the transport options of a gRPC client connection,
// receiving messages of up to MaxMsgBytes.
func Dial() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithWriteBufferSize(bufferSize),
		grpc.WithReadBufferSize(bufferSize),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgBytes)),
	}
}
