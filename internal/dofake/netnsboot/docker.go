package netnsboot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
)

// imageIDs returns the ids of node's images.
func (b *Booter) imageIDs(ctx context.Context, node int) (map[string]bool, error) {
	cli, err := b.cluster.DockerClient(node)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	list, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("node %d: list images: %w", node, err)
	}
	ids := map[string]bool{}
	for _, im := range list {
		ids[im.ID] = true
	}
	return ids, nil
}

// resetDocker brings node's dockerd back to how it was before a droplet
// booted on it: out of any swarm, with no containers, volumes or
// networks of its own, and only the images in keep (nil: keep all).
func (b *Booter) resetDocker(ctx context.Context, node int, keep map[string]bool) error {
	cli, err := b.cluster.DockerClient(node)
	if err != nil {
		return err
	}
	defer cli.Close()
	var errs []error
	if err := cli.SwarmLeave(ctx, true); err != nil && !strings.Contains(err.Error(), "not part of a swarm") {
		errs = append(errs, fmt.Errorf("leave the swarm: %w", err))
	}
	cts, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, ct := range cts {
		if err := cli.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", ct.ID[:12], err))
		}
	}
	vols, err := cli.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		errs = append(errs, fmt.Errorf("list volumes: %w", err))
	}
	for _, v := range vols.Volumes {
		if err := cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	if _, err := cli.NetworksPrune(ctx, filters.Args{}); err != nil {
		errs = append(errs, fmt.Errorf("prune networks: %w", err))
	}
	if keep != nil {
		list, err := cli.ImageList(ctx, image.ListOptions{All: true})
		if err != nil {
			errs = append(errs, fmt.Errorf("list images: %w", err))
		}
		for _, im := range list {
			if keep[im.ID] {
				continue
			}
			if _, err := cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", im.ID, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node %d: reset its dockerd: %w", node, err)
	}
	return nil
}
