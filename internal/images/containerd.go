package images

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/platforms"
)

// Namespace is the containerd namespace CRI (and so the kubelet) uses.
const Namespace = "k8s.io"

// Snapshotter is the one the agent's containerd runs pods on.
const Snapshotter = "overlayfs"

// Info describes one image in containerd.
type Info struct {
	Name    string
	Digest  string
	Size    int64
	Created time.Time
}

func dial(socket string) (*containerd.Client, error) {
	c, err := containerd.New(socket, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd at %s: %w", socket, err)
	}
	return c, nil
}

// ImportFile loads a docker-archive or OCI tarball into containerd's k8s.io
// namespace with containerd's Go client and unpacks it for overlayfs, so
// CRI can run it at once. It returns the names of the images imported.
func ImportFile(ctx context.Context, socket, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening image archive: %w", err)
	}
	defer f.Close()
	c, err := dial(socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	imgs, err := c.Import(ctx, f, containerd.WithImportPlatform(platforms.Default()))
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("importing %s: the archive names no image (a docker archive needs RepoTags, an OCI one the org.opencontainers.image.ref.name annotation)", path)
	}
	var names []string
	for _, img := range imgs {
		if err := containerd.NewImage(c, img).Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// List returns the named images in containerd's k8s.io namespace, sorted by
// name. CRI's own digest-only references (sha256:...) are left out, as
// `crictl images` shows them under their tags.
func List(ctx context.Context, socket string) ([]Info, error) {
	c, err := dial(socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	imgs, err := c.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []Info
	for _, img := range imgs {
		if strings.HasPrefix(img.Name(), "sha256:") {
			continue
		}
		size, err := img.Size(ctx)
		if err != nil {
			size = -1
		}
		out = append(out, Info{Name: img.Name(), Digest: img.Target().Digest.String(), Size: size, Created: img.Metadata().CreatedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
