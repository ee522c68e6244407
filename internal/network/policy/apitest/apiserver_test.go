package apitest

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/policy"
	"skiff.dev/skiff/test/integration/framework"
)

// TestAgainstAPIServer: a policy applied with a real kubectl to skiff's
// API server (its defaulting of protocols and policyTypes, the namespace
// name label) reaches the controller's rules.
func TestAgainstAPIServer(t *testing.T) {
	bins := framework.KubectlBinaries()
	if bins["1.33"] == "" {
		t.Skip("needs kubectl 1.33")
	}
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	for _, ns := range []string{"np-a", "np-b"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod := func(ns, name, node, ip string, lbls map[string]string, ports ...v1.ContainerPort) {
		t.Helper()
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
			Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "localhost/skiff/testapp:v1", Ports: ports}}},
		}
		p, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}}}
		if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("np-a", "web", "node-x", "10.96.5.10", map[string]string{"app": "web"}, v1.ContainerPort{Name: "http", ContainerPort: 8080})
	mkPod("np-b", "client", "node-y", "10.96.6.20", map[string]string{"role": "client"})
	mkPod("np-a", "client", "node-y", "10.96.6.21", map[string]string{"role": "client"})

	out, err := c.Kubectl(t, bins["1.33"], `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: np-b
      podSelector:
        matchLabels:
          role: client
    ports:
    - port: http
`, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v: %s", err, out)
	}

	nft := knftables.NewFake(knftables.IPv4Family, policy.DefaultTable)
	ctrl, err := policy.New(policy.Config{NodeName: "node-x", MinSyncPeriod: time.Millisecond}, policy.Deps{Client: c.Client, NFT: nft})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	want := []string{
		"add element ip skiff-policy ingress-pods { 10.96.5.10 : jump ingress-np-a/web }",
		"add rule ip skiff-policy ingress-np-a/web ip saddr @peers-np-a/allow/in/0 meta l4proto tcp th dport 8080 return",
		"add element ip skiff-policy peers-np-a/allow/in/0 { 10.96.6.20 }",
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		dump := nft.Dump()
		missing := ""
		for _, w := range want {
			if !strings.Contains(dump, w) {
				missing = w
			}
		}
		if missing == "" {
			if strings.Contains(dump, "10.96.6.21") {
				t.Fatalf("the client in the policy's own namespace is a peer:\n%s", dump)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("table lacks %q:\n%s", missing, dump)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
