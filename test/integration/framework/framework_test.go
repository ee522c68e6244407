package framework

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/storage/storagetest"
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

func TestServerOnExternalEtcd(t *testing.T) {
	cli := storagetest.StartEtcd(t)
	c := Start(t, Options{EtcdServers: cli.Endpoints()})
	ctx := context.Background()
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ext"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a configmap: %v", err)
	}
	// The object must be in the external etcd, under skiff's prefix.
	resp, err := cli.Get(ctx, "/registry/configmaps/default/ext")
	if err != nil {
		t.Fatalf("reading external etcd: %v", err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("configmap not stored in the external etcd (got %d keys)", len(resp.Kvs))
	}
}
