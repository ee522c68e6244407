package framework

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStartServesDefaultNamespaces(t *testing.T) {
	c := Start(t, Options{})
	ns, err := c.Client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing namespaces: %v", err)
	}
	want := map[string]bool{"default": false, "kube-system": false, "kube-public": false, "kube-node-lease": false}
	for _, n := range ns.Items {
		want[n.Name] = true
	}
	for n, ok := range want {
		if !ok {
			t.Errorf("namespace %s missing", n)
		}
	}
}
