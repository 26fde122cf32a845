package netns

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/api/types/image"
)

// BusyboxImage is the tiny test image ImportBusybox builds.
const BusyboxImage = "cloudml/busybox:test"

// ErrNoBusybox means no statically linked busybox was found.
var ErrNoBusybox = errors.New("static busybox not found (apt-get install busybox-static)")

// busyboxPaths are where Debian's busybox-static installs the binary.
var busyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// busyboxApplets are linked in the image's /bin.
var busyboxApplets = []string{
	"sh", "echo", "seq", "sleep", "cat", "true", "false", "ls", "mkdir",
	"env", "hostname", "nc", "wc", "head", "tail", "grep", "rm", "cp", "mv",
	"touch", "date", "dd", "yes", "printf", "test", "[", "id", "kill", "ps",
	"wget", "sync", "uname", "find", "sort", "tee", "basename", "dirname",
}

// BusyboxRootfs returns a tar of a root filesystem holding Debian's static
// busybox as /bin/busybox with its common applets linked beside it.
func BusyboxRootfs() ([]byte, error) {
	var bin []byte
	for _, p := range busyboxPaths {
		data, err := os.ReadFile(p)
		if err == nil && bytes.HasPrefix(data, []byte("\x7fELF")) {
			bin = data
			break
		}
	}
	if bin == nil {
		return nil, ErrNoBusybox
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Unix(0, 0)
	for _, dir := range []string{"bin", "tmp", "etc", "proc", "sys", "dev"} {
		mode := int64(0o755)
		if dir == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: mod}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: mod}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mod}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ImportBusybox builds BusyboxImage (FROM scratch: static busybox and its
// applets, PATH=/bin) and imports it into every node's daemon. It returns
// the image's name.
func (c *Cluster) ImportBusybox(ctx context.Context) (string, error) {
	if !c.cfg.Dockerd {
		return "", ErrNoDockerd
	}
	rootfs, err := BusyboxRootfs()
	if err != nil {
		return "", err
	}
	start := time.Now()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.importImage(ctx, i, rootfs, BusyboxImage) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	c.log.Info("busybox imported", "image", BusyboxImage, "nodes", len(c.nodes), "elapsed", time.Since(start).Round(time.Millisecond))
	return BusyboxImage, nil
}

// importImage imports a root filesystem tar into node's daemon as ref.
func (c *Cluster) importImage(ctx context.Context, node int, rootfs []byte, ref string) error {
	cli, err := c.DockerClient(node)
	if err != nil {
		return err
	}
	defer cli.Close()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{"ENV PATH=/bin", `CMD ["sh"]`}})
	if err != nil {
		return fmt.Errorf("node %d: import %s: %w", node, ref, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("node %d: import %s: %w", node, ref, err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("node %d: import %s: %s", node, ref, bytes.TrimSpace(out))
	}
	return nil
}
