package serviceaccount

import (
	"context"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestSync(t *testing.T) {
	now := metav1.Now()
	cases := []struct {
		name       string
		ns         *corev1.Namespace
		existingSA bool
		wantCreate bool
	}{
		{name: "creates missing default", ns: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, wantCreate: true},
		{name: "keeps existing default", ns: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, existingSA: true},
		{name: "skips terminating namespace", ns: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", DeletionTimestamp: &now}}},
		{name: "skips terminating phase", ns: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}},
		{name: "missing namespace is not an error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.ns != nil {
				objs = append(objs, tc.ns)
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: "a"}}
			if tc.existingSA {
				objs = append(objs, sa)
			}
			client := fake.NewClientset(objs...)
			factory := informers.NewSharedInformerFactory(client, 0)
			c, err := New(client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ns != nil {
				factory.Core().V1().Namespaces().Informer().GetIndexer().Add(tc.ns)
			}
			if tc.existingSA {
				factory.Core().V1().ServiceAccounts().Informer().GetIndexer().Add(sa)
			}
			if err := c.sync(context.Background(), "a"); err != nil {
				t.Fatal(err)
			}
			acts := client.Actions()
			if !tc.wantCreate {
				if len(acts) != 0 {
					t.Fatalf("unexpected actions %v", acts)
				}
				return
			}
			if len(acts) != 1 || acts[0].GetVerb() != "create" || acts[0].GetResource().Resource != "serviceaccounts" || acts[0].GetNamespace() != "a" {
				t.Fatalf("unexpected actions %v", acts)
			}
			got := acts[0].(k8stesting.CreateAction).GetObject().(*corev1.ServiceAccount)
			if got.Name != DefaultName {
				t.Fatalf("created %q", got.Name)
			}
		})
	}
}

func TestRecreatesAfterDelete(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: "x"}}
	other := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder", Namespace: "y"}}
	c.enqueueServiceAccountNamespace(other)
	if c.queue.Len() != 0 {
		t.Fatal("deleting a non-default service account must not enqueue")
	}
	c.enqueueServiceAccountNamespace(sa)
	key, _ := c.queue.Get()
	if key != "x" {
		t.Fatalf("enqueued %q", key)
	}
}
