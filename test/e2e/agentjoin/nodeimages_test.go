package agentjoin

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/test/integration/framework"
)

// checkNodeImages waits for the node's status.images to list the built-in
// images and pulled (an image the test pulled through the registry), each
// with its size, largest first, as the kubelet reports them on its
// status-update cycle (one minute); then `kubectl get node -o yaml` must
// show the same list.
func checkNodeImages(t *testing.T, c *framework.Cluster, pulled string, kubectl map[string]string) {
	t.Helper()
	want := []string{images.Pause, images.Testapp, pulled}
	has := func(imgs []corev1.ContainerImage, name string) bool {
		return slices.ContainsFunc(imgs, func(i corev1.ContainerImage) bool { return slices.Contains(i.Names, name) })
	}
	var node *corev1.Node
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for {
		var err error
		node, err = c.Client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(want, func(n string) bool { return !has(node.Status.Images, n) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node status images %v, want them to include %v", node.Status.Images, want)
		}
		time.Sleep(time.Second)
	}
	imgs := node.Status.Images
	t.Logf("node status lists %d images (waited %s for the status cycle)", len(imgs), time.Since(start).Round(time.Second))
	for i, img := range imgs {
		if img.SizeBytes <= 0 || len(img.Names) == 0 || len(img.Names) > 5 {
			t.Errorf("image %d: names %v size %d", i, img.Names, img.SizeBytes)
		}
		if i > 0 && img.SizeBytes > imgs[i-1].SizeBytes {
			t.Errorf("images not largest first: %d bytes after %d", img.SizeBytes, imgs[i-1].SizeBytes)
		}
	}
	for v, bin := range kubectl {
		out, err := c.Kubectl(t, bin, "", "get", "node", nodeName, "-o", "yaml")
		if err != nil {
			t.Fatalf("kubectl %s get node -o yaml: %v\n%s", v, err, out)
		}
		var shown corev1.Node
		if err := yaml.Unmarshal([]byte(out), &shown); err != nil {
			t.Fatalf("kubectl %s get node -o yaml: %v", v, err)
		}
		for _, n := range want {
			if !has(shown.Status.Images, n) || !strings.Contains(out, n) {
				t.Errorf("kubectl %s get node -o yaml does not show image %s:\n%s", v, n, out)
			}
		}
	}
}
