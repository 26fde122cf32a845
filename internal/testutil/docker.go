package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// HostDocker connects to the host's Docker daemon (DOCKER_HOST, else the
// default socket), skipping (failing under CI) when none is running. The
// client is closed when the test ends, after the cleanups registered later.
func HostDocker(t testing.TB) *client.Client {
	t.Helper()
	const why = "a running Docker daemon (start one with 'bash scripts/dockerd.sh')"
	if os.Getenv("DOCKER_HOST") == "" {
		_, err := os.Stat("/var/run/docker.sock")
		NeedSystem(t, why, err)
	}
	d, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = d.Ping(ctx)
	NeedSystem(t, why, err)
	return d
}

// OneFileRootfs returns a root file system (a tar) holding one file of size
// random bytes.
func OneFileRootfs(size int) []byte {
	content := make([]byte, size)
	rand.Read(content)
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "payload", Mode: 0o644, Size: int64(size)})
	tw.Write(content)
	tw.Close()
	return rootfs.Bytes()
}

// ImportImage imports rootfs into d as an image under a fresh tag of repo,
// with Dockerfile-style changes, and returns the tag and the image id. The
// image (with every tag a test adds) is removed when the test ends.
func ImportImage(t testing.TB, d *client.Client, repo string, rootfs []byte, changes ...string) (ref, id string) {
	t.Helper()
	suffix := make([]byte, 6)
	rand.Read(suffix)
	ref = repo + ":" + hex.EncodeToString(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := d.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref,
		image.ImportOptions{Changes: changes})
	if err != nil {
		t.Fatalf("import test image %s: %v", ref, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		t.Fatalf("import test image %s: %v", ref, err)
	}
	insp, err := d.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect test image %s: %v", ref, err)
	}
	t.Cleanup(func() { // by id: also the tags a test added
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := d.ImageRemove(ctx, insp.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove test image %s: %v", ref, err)
		}
	})
	return ref, insp.ID
}
