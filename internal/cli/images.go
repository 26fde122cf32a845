package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const imageLong = `The images the coordinator keeps for nodes without a registry: pushed by
submit --image from this machine's Docker, or uploaded by a node that had
one. They stay until removed here or replaced by a push under the same name.`

func (a *App) imageCmd() *cobra.Command {
	return groupCmd("image", "Images the coordinator keeps for nodes without a registry", imageLong,
		`  cloudml-client image ls
  cloudml-client image rm cloudml/octave:7`,
		a.imageListCmd(), a.imageRemoveCmd())
}

func (a *App) imageListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List kept images: name, id, archive size",
		Long: "Ls lists the images the coordinator keeps, with id and archive size; names\n" +
			"sharing an id share one archive. -o wide shows the full id.",
		Example: `  cloudml-client image ls
  cloudml-client image ls -o json`,
		Aliases: []string{"list"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			images, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(&cloudmlv1.ListImagesResponse{Images: images})
			}
			t := newTable(a.Stdout)
			t.row("IMAGE", "ID", "SIZE")
			for _, im := range images {
				id := shortID(im.GetId())
				if a.wide() {
					id = im.GetId()
				}
				t.row(im.GetName(), id, fmt.Sprintf("%.1f MiB", mib(im.GetSize())))
			}
			return t.flush()
		},
	}
}

func (a *App) imageRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Forget kept images; refused while a job that has not ended uses one",
		Long: "Rm forgets image names; an archive goes with the last name that points at it.\n" +
			"An image a job that has not ended uses is refused (cancel the job first).\n" +
			"Nodes keep the copies they loaded.",
		Example: `  cloudml-client image rm cloudml/octave:7
  cloudml-client image rm old:1 older:1 -o json`,
		Aliases:           []string{"remove"},
		Args:              minArgs("image name (see 'cloudml-client image ls')"),
		ValidArgsFunction: a.completeImages,
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return eachArg(cmd.Context(), a, names, "removed", c.RemoveImage, func(name string, resp *cloudmlv1.DeleteImageResponse) {
				fmt.Fprintf(a.Stdout, "removed image %s (%s); %.1f MiB freed\n", name, shortID(resp.GetImage().GetId()), mib(resp.GetBytesFreed()))
			})
		},
	}
}

// completeImages completes image names with the coordinator's.
func (a *App) completeImages(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	images, err := c.Images(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, im := range images {
		if strings.HasPrefix(im.GetName(), toComplete) {
			out = append(out, im.GetName())
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
