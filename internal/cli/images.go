package cli

import (
	"context"
	"fmt"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const imageHelp = `cloudml-client image ls | rm NAME...

The images the coordinator keeps for nodes without a registry: pushed by
submit --image from this machine's Docker, or uploaded by a node that had
one. They stay until removed here or replaced by a push under the same name.

  image ls         names, ids and archive sizes (names sharing an id share
                   one archive)
  image rm NAME... forget names; an archive goes with the last name that
                   points at it. An image a running job uses is refused
                   (cancel the job first). Nodes keep what they loaded.`

// image runs "image ls" and "image rm".
func (a *App) image(ctx context.Context, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "ls", "list":
		return a.imageList(ctx, args)
	case "rm", "remove":
		return a.imageRemove(ctx, args)
	case "-h", "--help", "help":
		fmt.Fprintln(a.Stderr, imageHelp)
		return nil
	}
	return fmt.Errorf("image needs a subcommand: 'image ls' or 'image rm NAME...': %w", errUsage)
}

func (a *App) imageList(ctx context.Context, args []string) error {
	fs := a.newFlags("image ls", "cloudml-client image ls: the images the coordinator keeps, with id and archive size")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := a.connect(); err != nil {
		return err
	}
	cctx, cancel := unary(ctx)
	defer cancel()
	resp, err := a.jobs.ListImages(cctx, &cloudmlv1.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	if a.json() {
		return a.printJSON(resp)
	}
	w := a.table()
	row(w, "IMAGE", "ID", "SIZE")
	for _, im := range resp.Images {
		row(w, im.Name, shortID(im.Id), fmt.Sprintf("%.1f MiB", mib(im.Size)))
	}
	return w.Flush()
}

func (a *App) imageRemove(ctx context.Context, args []string) error {
	fs := a.newFlags("image rm", "cloudml-client image rm NAME...: forget images the coordinator keeps; "+
		"an archive goes with the last name that points at it")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("image rm needs at least one image name (see 'cloudml-client image ls'): %w", errUsage)
	}
	if err := a.connect(); err != nil {
		return err
	}
	return eachArg(ctx, a, names, "removed", func(ctx context.Context, name string) (*cloudmlv1.DeleteImageResponse, error) {
		resp, err := a.jobs.DeleteImage(ctx, &cloudmlv1.DeleteImageRequest{Name: name})
		if err != nil {
			return nil, fmt.Errorf("remove image %s: %w", name, err)
		}
		return resp, nil
	}, func(name string, resp *cloudmlv1.DeleteImageResponse) {
		fmt.Fprintf(a.Stdout, "removed image %s (%s); %.1f MiB freed\n", name, shortID(resp.Image.Id), mib(resp.BytesFreed))
	})
}
