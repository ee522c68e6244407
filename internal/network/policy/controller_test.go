package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/knftables"
)

// TestController runs the controller against a fake API and a fake table:
// the initial state is programmed, then a policy, a pod on this node and a
// peer elsewhere arrive live, and a status-only pod update is ignored.
func TestController(t *testing.T) {
	client := fake.NewSimpleClientset(
		ns("default", nil),
		pod("default", "web", localNode, "10.96.1.10", map[string]string{"app": "web"}),
		pod("default", "client", "node-b", "10.96.2.10", map[string]string{"role": "client"}),
		policy("default", "deny", sel("app", "web"), nil),
	)
	nft := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	synced := make(chan *Ruleset, 100)
	c, err := New(Config{NodeName: localNode, MinSyncPeriod: time.Millisecond}, Deps{
		Client: client, NFT: nft,
		OnSync: func(_ bool, rs *Ruleset) { synced <- rs },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor := func(what string, ok func(dump string) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			if ok(nft.Dump()) {
				return
			}
			select {
			case <-synced:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out waiting for %s; table:\n%s", what, nft.Dump())
			}
		}
	}
	waitFor("default deny of web", func(d string) bool {
		return strings.Contains(d, "add element ip skiff-policy ingress-pods { 10.96.1.10 : jump ingress-default/web }") &&
			strings.Contains(d, "add rule ip skiff-policy ingress-default/web drop")
	})

	ctx2 := context.Background()
	allow := policy("default", "allow-client", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "client"))},
			Ports: []networkingv1.NetworkPolicyPort{numPort(v1.ProtocolTCP, 8080)},
		}}
	})
	if _, err := client.NetworkingV1().NetworkPolicies("default").Create(ctx2, allow, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the allow rule", func(d string) bool {
		return strings.Contains(d, "ip saddr @peers-default/allow-client/in/0 meta l4proto tcp th dport 8080 return") &&
			strings.Contains(d, "peers-default/allow-client/in/0 { 10.96.2.10 }")
	})
	if _, err := client.CoreV1().Pods("default").Create(ctx2, pod("default", "client-2", "node-c", "10.96.3.10", map[string]string{"role": "client"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx2, pod("default", "web-2", localNode, "10.96.1.11", map[string]string{"app": "web"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the new peer and the new local pod", func(d string) bool {
		return strings.Contains(d, "peers-default/allow-client/in/0 { 10.96.3.10 }") &&
			strings.Contains(d, "ingress-pods { 10.96.1.11 : jump ingress-default/web-2 }")
	})

	// A status change policy does not read triggers no sync.
	for quiet := false; !quiet; { // let syncs of earlier events finish
		select {
		case <-synced:
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	p, err := client.CoreV1().Pods("default").Get(ctx2, "client", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx2, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
		t.Error("a readiness change caused a sync")
	case <-time.After(300 * time.Millisecond):
	}

	if err := client.NetworkingV1().NetworkPolicies("default").Delete(ctx2, "deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.NetworkingV1().NetworkPolicies("default").Delete(ctx2, "allow-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("isolation lifted", func(d string) bool { return !strings.Contains(d, "jump ingress-") && !strings.Contains(d, "peers-") })

	// Stopping with nothing isolated removes the table.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the cleanup
	if d := nft.Dump(); d != "" {
		t.Errorf("table left after stopping with no pod isolated:\n%s", d)
	}
}

// TestControllerKeepsIsolatingTable: stopping while pods are isolated
// leaves the table, so they stay isolated until the next agent starts.
func TestControllerKeepsIsolatingTable(t *testing.T) {
	client := fake.NewSimpleClientset(ns("default", nil),
		pod("default", "web", localNode, "10.96.1.10", map[string]string{"app": "web"}),
		policy("default", "deny", sel("app", "web"), nil))
	nft := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	synced := make(chan struct{}, 10)
	c, err := New(Config{NodeName: localNode}, Deps{Client: client, NFT: nft, OnSync: func(bool, *Ruleset) { synced <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("no sync")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := nft.Dump(); !strings.Contains(d, "10.96.1.10 : jump ingress-default/web") {
		t.Errorf("isolating table removed on stop:\n%s", d)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Deps{Client: fake.NewSimpleClientset(), NFT: knftables.NewFake(knftables.IPv4Family, DefaultTable)}); err == nil {
		t.Error("no node name accepted")
	}
	if _, err := New(Config{NodeName: "n"}, Deps{NFT: knftables.NewFake(knftables.IPv4Family, DefaultTable)}); err == nil {
		t.Error("no client accepted")
	}
}

// TestSlimPod: the cached, slimmed pods give the same rules as the full
// objects.
func TestSlimPod(t *testing.T) {
	in := fixture()
	full, err := Render(Compute(in))
	if err != nil {
		t.Fatal(err)
	}
	slim := in
	slim.Pods = nil
	for _, p := range in.Pods {
		p = p.DeepCopy()
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "sidecar", Image: "x", Env: []v1.EnvVar{{Name: "A", Value: "b"}}})
		p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", Ready: true}}
		o, err := slimPod(p)
		if err != nil {
			t.Fatal(err)
		}
		sp := o.(*v1.Pod)
		if len(sp.Status.ContainerStatuses) != 0 || len(sp.Spec.Containers) > 1 {
			t.Fatalf("slimPod kept what policy does not read: %+v", sp)
		}
		slim.Pods = append(slim.Pods, sp)
	}
	got, err := Render(Compute(slim))
	if err != nil {
		t.Fatal(err)
	}
	if got != full {
		t.Errorf("rules from slimmed pods differ:\n%s", lineDiff(full, got))
	}
}
