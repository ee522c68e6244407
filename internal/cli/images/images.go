// Package images is `skiff images`: import image tarballs into a node's
// containerd (the offline path: no registry needed) and list what it holds.
// It talks to the agent's private containerd under --data-dir unless
// --address names another socket.
package images

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/images"
)

type options struct {
	dataDir, address string
}

func (o *options) socket() (string, error) {
	s := o.address
	if s == "" {
		s = agent.ContainerdSocket(o.dataDir)
	}
	if _, err := os.Stat(s); err != nil {
		return "", fmt.Errorf("no containerd socket at %s: is the agent running (or pass --address)?", s)
	}
	return s, nil
}

// NewCommand returns `skiff images`.
func NewCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Import image tarballs into this node's containerd, or list its images",
	}
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", "/var/lib/skiff", "the agent's data directory (its containerd socket is <data-dir>/agent/containerd/containerd.sock)")
	cmd.PersistentFlags().StringVar(&o.address, "address", "", "containerd socket to use instead of the agent's")
	cmd.AddCommand(&cobra.Command{
		Use:   "import FILE...",
		Short: "Import docker-archive or OCI tarballs (docker save, crane pull) into the k8s.io namespace",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sock, err := o.socket()
			if err != nil {
				return err
			}
			for _, f := range args {
				names, err := images.ImportFile(ctxOf(cmd), sock, f)
				if err != nil {
					return err
				}
				for _, n := range names {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", n)
				}
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the images this node's containerd holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sock, err := o.socket()
			if err != nil {
				return err
			}
			imgs, err := images.List(ctxOf(cmd), sock)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tDIGEST\tSIZE")
			for _, i := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", i.Name, short(i.Digest), size(i.Size))
			}
			return tw.Flush()
		},
	})
	return cmd
}

func ctxOf(cmd *cobra.Command) context.Context {
	if c := cmd.Context(); c != nil {
		return c
	}
	return context.Background()
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func size(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
