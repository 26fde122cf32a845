// Package imagetest builds `docker save` archives by hand for the tests of
// the image store, the coordinator's image RPCs and image pushes: one or several
// images, in Docker's legacy layout or the OCI layout newer engines write,
// with the tags and the damage a test asks for.
package imagetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Image is one image of an archive.
type Image struct {
	// Seed makes the image's config, and so its id, unique.
	Seed string
	// Layers are the layer tars' contents; nil means one small layer.
	Layers [][]byte
	// RepoTags are the names manifest.json gives the image.
	RepoTags []string
	// BadLayer makes the config name a digest the first layer does not have.
	BadLayer bool
	// NoConfig leaves the config blob out of the archive.
	NoConfig bool
}

// Options shape the whole archive.
type Options struct {
	// OCI writes the OCI layout (blobs/sha256/..., index.json) of Docker
	// 25+ instead of the legacy one (<hex>.json, <layer>/layer.tar).
	OCI bool
	// NoManifest leaves manifest.json out.
	NoManifest bool
}

// ID returns the image id of img: the sha256 of its config.
func ID(img Image) string {
	cfg, _ := config(img)
	return "sha256:" + digest(cfg)
}

// Archive returns an archive of images and their ids, in order.
func Archive(opts Options, images ...Image) ([]byte, []string) {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var (
		buf      bytes.Buffer
		manifest []entry
		ids      []string
		index    []map[string]any
	)
	tw := tar.NewWriter(&buf)
	put := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	for _, img := range images {
		cfg, layers := config(img)
		id := digest(cfg)
		ids = append(ids, "sha256:"+id)
		e := entry{RepoTags: img.RepoTags}
		for _, l := range layers {
			name := digest(l) + "/layer.tar"
			if opts.OCI {
				name = "blobs/sha256/" + digest(l)
			}
			put(name, l)
			e.Layers = append(e.Layers, name)
		}
		e.Config = id + ".json"
		if opts.OCI {
			e.Config = "blobs/sha256/" + id
		}
		if !img.NoConfig {
			put(e.Config, cfg)
		}
		manifest = append(manifest, e)
		for _, tag := range img.RepoTags {
			index = append(index, map[string]any{"digest": "sha256:" + id, "annotations": map[string]string{"io.containerd.image.name": tag}})
		}
	}
	if opts.OCI {
		put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		data, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": index})
		put("index.json", data)
	}
	if !opts.NoManifest {
		data, _ := json.Marshal(manifest)
		put("manifest.json", data)
	}
	tw.Close()
	return buf.Bytes(), ids
}

// config is img's image config and its layers.
func config(img Image) ([]byte, [][]byte) {
	layers := img.Layers
	if layers == nil {
		layers = [][]byte{[]byte("layer of " + img.Seed)}
	}
	var diffIDs []string
	for i, l := range layers {
		d := "sha256:" + digest(l)
		if i == 0 && img.BadLayer {
			d = "sha256:" + digest([]byte("not the layer"))
		}
		diffIDs = append(diffIDs, d)
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": map[string]any{"Labels": map[string]string{"seed": img.Seed}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	return cfg, layers
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Layer returns a layer of about size bytes whose content depends on seed.
func Layer(seed string, size int) []byte {
	if seed == "" {
		seed = "-"
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7) ^ seed[i%len(seed)]
	}
	return append(b, fmt.Sprint(seed)...)
}
