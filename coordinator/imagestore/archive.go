package imagestore

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/distribution/reference"
)

// Size caps of the small JSON files an archive holds. Real ones are a few
// KiB; the caps only keep a hostile archive from filling memory.
const (
	maxManifestBytes = 1 << 20
	maxConfigBytes   = 8 << 20
	maxLinkHops      = 16
)

// manifestEntry is one image of a `docker save` manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// imageConfig is the part of an image config the check reads.
type imageConfig struct {
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// ociIndex is the part of an OCI layout's index.json the check reads.
type ociIndex struct {
	Manifests []struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// archiveContents is what one pass over a tar collects: the sha256 of
// every regular file, the links, and the small files the check parses.
type archiveContents struct {
	digests map[string]string // clean path -> hex sha256
	links   map[string]string // clean path -> clean target path
	kept    map[string][]byte // manifest.json, index.json, the config
}

// checkArchive reads the whole `docker save` archive in f and checks that
// loading it gives exactly what it is pushed as: one image, whose config
// (the legacy <hex>.json or the OCI blobs/sha256/<hex>) hashes to id and
// whose layers are all there with the digests the config names, tagged
// with no name but name (or none). An archive tagging another name would
// retag that image on every node that loads it. Errors wrap ErrInvalid.
func checkArchive(f *os.File, name, id string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	want := strings.TrimPrefix(id, "sha256:")
	c, err := readArchive(f, want)
	if err != nil {
		return err
	}
	raw, ok := c.kept["manifest.json"]
	if !ok {
		return fmt.Errorf("%w: not a `docker save` archive: it has no manifest.json", ErrInvalid)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("%w: manifest.json: %v", ErrInvalid, err)
	}
	if len(entries) != 1 {
		return fmt.Errorf("%w: the archive holds %d images; push exactly one (docker save of one name)", ErrInvalid, len(entries))
	}
	m := entries[0]
	cfgPath := path.Clean(m.Config)
	if got := configID(cfgPath); got != want {
		return fmt.Errorf("%w: the archive's image is sha256:%s, not %s as pushed", ErrInvalid, got, id)
	}
	if err := c.checkBlob(cfgPath, want, "the image config"); err != nil {
		return err
	}
	target, _ := c.resolve(cfgPath)
	var cfg imageConfig
	if err := json.Unmarshal(c.kept[target], &cfg); err != nil {
		return fmt.Errorf("%w: the image config: %v", ErrInvalid, err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return fmt.Errorf("%w: the archive lists %d layers, its image config %d", ErrInvalid, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		if err := c.checkBlob(path.Clean(l), strings.TrimPrefix(cfg.RootFS.DiffIDs[i], "sha256:"), fmt.Sprintf("layer %d", i+1)); err != nil {
			return err
		}
	}
	names := m.RepoTags
	if raw, ok := c.kept["index.json"]; ok {
		var idx ociIndex
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("%w: index.json: %v", ErrInvalid, err)
		}
		if len(idx.Manifests) > 1 {
			return fmt.Errorf("%w: the archive's index.json holds %d images; push exactly one", ErrInvalid, len(idx.Manifests))
		}
		for _, mf := range idx.Manifests {
			if n := mf.Annotations["io.containerd.image.name"]; n != "" {
				names = append(names, n)
			}
		}
	}
	return checkTags(names, name)
}

// readArchive hashes every regular file of the tar in r and keeps
// manifest.json, index.json and the config blob of id want.
func readArchive(r io.Reader, want string) (*archiveContents, error) {
	c := &archiveContents{digests: map[string]string{}, links: map[string]string{}, kept: map[string][]byte{}}
	keep := map[string]int64{"manifest.json": maxManifestBytes, "index.json": maxManifestBytes,
		want + ".json": maxConfigBytes, "blobs/sha256/" + want: maxConfigBytes}
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: not a `docker save` archive: %v", ErrInvalid, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch h.Typeflag {
		case tar.TypeSymlink:
			c.links[name] = path.Join(path.Dir(name), h.Linkname)
		case tar.TypeLink:
			c.links[name] = path.Clean(h.Linkname)
		case tar.TypeReg:
			delete(c.links, name)
			sum := sha256.New()
			var w io.Writer = sum
			var kept *bytes.Buffer
			if limit, ok := keep[name]; ok {
				if h.Size > limit {
					return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, name, h.Size, limit)
				}
				kept = &bytes.Buffer{}
				w = io.MultiWriter(sum, kept)
			}
			if _, err := io.CopyBuffer(w, tr, buf); err != nil {
				return nil, fmt.Errorf("%w: read %s: %v", ErrInvalid, h.Name, err)
			}
			c.digests[name] = hex.EncodeToString(sum.Sum(nil))
			if kept != nil {
				c.kept[name] = kept.Bytes()
			}
		}
	}
}

// resolve follows links within the archive to a regular file.
func (c *archiveContents) resolve(p string) (string, bool) {
	for range maxLinkHops {
		if _, ok := c.digests[p]; ok {
			return p, true
		}
		next, ok := c.links[p]
		if !ok {
			return "", false
		}
		p = next
	}
	return "", false
}

// checkBlob checks that the file at p (after links) hashes to the hex
// digest want.
func (c *archiveContents) checkBlob(p, want, what string) error {
	target, ok := c.resolve(p)
	if !ok {
		return fmt.Errorf("%w: %s (%s) is missing from the archive", ErrInvalid, what, p)
	}
	if got := c.digests[target]; got != want {
		return fmt.Errorf("%w: %s (%s) hashes to sha256:%s, not sha256:%s", ErrInvalid, what, p, got, want)
	}
	return nil
}

// configID is the image id a manifest's Config path names: <hex>.json or
// blobs/sha256/<hex>.
func configID(p string) string {
	if hexID, ok := strings.CutPrefix(p, "blobs/sha256/"); ok {
		return hexID
	}
	return strings.TrimSuffix(p, ".json")
}

// checkTags refuses any name in tags that is not name, both normalized the
// way docker does ("debian" is docker.io/library/debian:latest).
func checkTags(tags []string, name string) error {
	own := normalize(name)
	for _, t := range tags {
		if own == "" || normalize(t) != own {
			return fmt.Errorf("%w: the archive tags the image %q; an image pushed as %q may carry no other name "+
				"(loading it would retag %q on every node): save it by that name alone (docker save %s)", ErrInvalid, t, name, t, name)
		}
	}
	return nil
}

// normalize is ref in docker's full form, or "" when it is not a valid
// reference.
func normalize(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.TagNameOnly(n).String()
}
