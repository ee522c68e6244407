package multinode

import (
	"context"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A NetworkPolicy on a pod denies a client on another node, lets the
// allowed one through, and opening it up lets the denied one in again.
func TestNetworkPolicyAcrossNodes(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := runPods(t, c, ns,
		testappPod("db", c.nodes[1].name, map[string]string{"app": "db"}),
		testappPod("frontend", c.nodes[0].name, map[string]string{"role": "frontend"}),
		testappPod("other", c.nodes[2].name, map[string]string{"role": "other"}),
	)
	db, frontend, other := pods[0], podNetns(t, c, pods[1]), podNetns(t, c, pods[2])
	u := url(db.Status.PodIP, 8080, "/hostname")
	eventually(t, 30*time.Second, frontend, u, "db")
	eventually(t, 30*time.Second, other, u, "db")

	port := intstr.FromInt32(8080)
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
	policies := c.client.NetworkingV1().NetworkPolicies(ns)
	if _, err := policies.Create(context.Background(), pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	denied(t, other, u)
	eventually(t, 30*time.Second, frontend, u, "db")

	// Allow everyone: the denied client gets through again.
	cur, err := policies.Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Ingress[0].From = nil
	if _, err := policies.Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, other, u, "db")
}

// denied waits until GET url from nsPath fails, then checks it keeps
// failing for a while (the policy is in place, not a blip).
func denied(t *testing.T, nsPath, u string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := get(nsPath, u); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s from %s still answered 30s after the policy denied it", u, nsPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if got, err := get(nsPath, u); err == nil {
			t.Fatalf("GET %s from %s answered %q after being denied", u, nsPath, got)
		}
	}
}
