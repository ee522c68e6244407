package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPodCIDR(t *testing.T) {
	withCIDR := func(cidr string) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{PodCIDR: cidr}}
	}
	for _, tc := range []struct {
		name       string
		configured string
		existing   *v1.Node
		ipam       string // what a node IPAM controller assigns on create
		want       string
		wantCreate bool
	}{
		{name: "registered node's cidr wins", configured: "10.99.0.0/24", existing: withCIDR("10.42.3.0/24"), want: "10.42.3.0/24"},
		{name: "configured cidr when the node has none", configured: "10.99.0.0/24", want: "10.99.0.0/24"},
		{name: "waits for node ipam", ipam: "10.42.7.0/24", want: "10.42.7.0/24", wantCreate: true},
		{name: "existing node without cidr gets one from ipam", existing: withCIDR(""), ipam: "10.42.9.0/24", want: "10.42.9.0/24"},
		{name: "falls back without ipam", want: FallbackPodCIDR, wantCreate: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.existing != nil {
				objs = append(objs, tc.existing)
			}
			client := fake.NewClientset(objs...)
			created := false
			client.PrependReactor("create", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
				created = true
				if tc.ipam != "" {
					a.(k8stesting.CreateAction).GetObject().(*v1.Node).Spec.PodCIDR = tc.ipam
				}
				return false, nil, nil
			})
			if tc.existing != nil && tc.ipam != "" {
				go func() {
					time.Sleep(200 * time.Millisecond)
					n := withCIDR(tc.ipam)
					_, _ = client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
				}()
			}
			a := &Agent{cfg: Config{NodeName: "n1", PodCIDR: tc.configured, PodCIDRWait: 2 * time.Second},
				log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			got, err := a.podCIDR(context.Background(), client)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Errorf("pod cidr = %s, want %s", got, tc.want)
			}
			if created != tc.wantCreate {
				t.Errorf("node created = %v, want %v", created, tc.wantCreate)
			}
		})
	}
}
