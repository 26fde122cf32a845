package testutil

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"

	"google.golang.org/grpc"

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

// FakeImageArchive is a `docker save` style archive of about size bytes
// whose image id is the sha256 of config: what a coordinator accepts as a
// pushed image, without a Docker to save one.
func FakeImageArchive(config string, size int) (id string, data []byte) {
	sum := sha256.Sum256([]byte(config))
	hexID := hex.EncodeToString(sum[:])
	layer := make([]byte, size)
	for i := range layer {
		layer[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"layer/layer.tar", layer}, {hexID + ".json", []byte(config)}, {"manifest.json", []byte(`[]`)}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	return "sha256:" + hexID, buf.Bytes()
}
