package testutil

import (
	"bytes"
	"io"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/testutil/imagetest"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ReceiveImage reads a node's UploadImage stream to its end, as a fake
// coordinator: the header (nil if none came), the archive and the refusal
// a node sends instead of an archive it cannot export.
func ReceiveImage(stream grpc.ClientStreamingServer[cloudmlv1.UploadImageRequest, cloudmlv1.UploadImageResponse]) (
	hdr *cloudmlv1.ImageHeader, archive []byte, refusal string, err error) {
	var buf bytes.Buffer
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return hdr, buf.Bytes(), refusal, nil
		}
		if err != nil {
			return nil, nil, "", err
		}
		switch {
		case msg.GetHeader() != nil:
			hdr = msg.GetHeader()
		case msg.GetError() != "":
			refusal = msg.GetError()
		default:
			buf.Write(msg.GetChunk())
		}
	}
}

// SendImage answers FetchImage as a fake coordinator: hdr, then data in
// chunks of chunk bytes.
func SendImage(stream grpc.ServerStreamingServer[cloudmlv1.FetchImageResponse], hdr *cloudmlv1.ImageHeader, data []byte, chunk int) error {
	if err := stream.Send(&cloudmlv1.FetchImageResponse{Part: &cloudmlv1.FetchImageResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), chunk)
		if err := stream.Send(&cloudmlv1.FetchImageResponse{Part: &cloudmlv1.FetchImageResponse_Chunk{Chunk: data[:n]}}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// ReadImage reads a FetchImage stream to its end, as a node would: the
// header and the archive.
func ReadImage(stream grpc.ServerStreamingClient[cloudmlv1.FetchImageResponse]) (*cloudmlv1.ImageHeader, []byte, error) {
	var hdr *cloudmlv1.ImageHeader
	var data []byte
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return hdr, data, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if m.GetHeader() != nil {
			hdr = m.GetHeader()
		}
		data = append(data, m.GetChunk()...)
	}
}

// FakeImageArchive is a `docker save` archive of one untagged image whose
// config is seeded by config, with a layer of about size bytes; id is its
// image id. It passes the coordinator's checks of pushed archives.
func FakeImageArchive(config string, size int) (id string, data []byte) {
	data, ids := imagetest.Archive(imagetest.Options{}, imagetest.Image{Seed: config, Layers: [][]byte{imagetest.Layer(config, size)}})
	return ids[0], data
}
