package namespace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
)

func obj(apiVersion, kind, ns, name string, finalizers ...string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Finalizers: finalizers},
	}
}

var resources = []*metav1.APIResourceList{
	{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: []string{"get", "list", "watch", "delete", "deletecollection"}},
		{Name: "pods/log", Namespaced: true, Kind: "Pod", Verbs: []string{"get"}},
		{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: []string{"get", "list", "delete"}},
		{Name: "bindings", Namespaced: true, Kind: "Binding", Verbs: []string{"create"}},
		{Name: "nodes", Namespaced: false, Kind: "Node", Verbs: []string{"get", "list", "delete", "deletecollection"}},
	}},
	{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
		{Name: "deployments", Namespaced: true, Kind: "Deployment", Verbs: []string{"list", "delete", "deletecollection"}},
	}},
}

type fixture struct {
	c      *Controller
	client *fake.Clientset
	meta   *metadatafake.FakeMetadataClient
}

func newFixture(t *testing.T, ns *corev1.Namespace, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(ns)
	client.Resources = resources
	scheme := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(scheme)
	meta := metadatafake.NewSimpleMetadataClient(scheme, objs...)
	// The fake tracker has no deletecollection: emulate the API server,
	// which marks objects with finalizers and removes the others.
	meta.PrependReactor("delete-collection", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gvr := a.GetResource()
		list, err := meta.Tracker().List(gvr, schema.GroupVersionKind{Group: "fake-metadata-client-group", Version: "v1"}, a.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		for _, it := range list.(*metav1.List).Items {
			o := it.Object.(*metav1.PartialObjectMetadata)
			if len(o.Finalizers) > 0 {
				now := metav1.Now()
				o.DeletionTimestamp = &now
				if err := meta.Tracker().Update(gvr, o, o.Namespace); err != nil {
					return true, nil, err
				}
				continue
			}
			if err := meta.Tracker().Delete(gvr, o.Namespace, o.Name); err != nil {
				return true, nil, err
			}
		}
		return true, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, meta, client.Discovery(), factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	factory.Core().V1().Namespaces().Informer().GetIndexer().Add(ns)
	return &fixture{c: c, client: client, meta: meta}
}

func terminating(name string) *corev1.Namespace {
	now := metav1.Now()
	return &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, DeletionTimestamp: &now},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating},
	}
}

func describe(acts []k8stesting.Action) []string {
	var out []string
	for _, a := range acts {
		if r := a.GetResource().Resource; a.GetVerb() == "get" && (r == "group" || r == "resource") {
			continue // discovery calls recorded by the fake clientset
		}
		s := a.GetVerb() + " " + a.GetResource().GroupResource().String()
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		if d, ok := a.(k8stesting.DeleteAction); ok {
			s += " " + d.GetName()
		}
		if a.GetVerb() == "list" || a.GetVerb() == "delete-collection" || a.GetVerb() == "delete" {
			s += " ns=" + a.GetNamespace()
		}
		out = append(out, s)
	}
	return out
}

func condition(ns *corev1.Namespace, t corev1.NamespaceConditionType) corev1.NamespaceCondition {
	for _, c := range ns.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.NamespaceCondition{}
}

func TestDeletesContentThenFinalizes(t *testing.T) {
	f := newFixture(t, terminating("doomed"),
		obj("v1", "Pod", "doomed", "p1"),
		obj("v1", "ConfigMap", "doomed", "c1"),
		obj("v1", "ConfigMap", "keep", "c2"),
		obj("apps/v1", "Deployment", "doomed", "d1"),
	)
	if err := f.c.sync(context.Background(), "doomed"); err != nil {
		t.Fatal(err)
	}
	got := describe(f.meta.Actions())
	wantMeta := []string{
		"list configmaps ns=doomed",
		"delete configmaps c1 ns=doomed",
		"delete-collection pods ns=doomed",
		"list pods ns=doomed",
		"delete-collection deployments.apps ns=doomed",
		"list deployments.apps ns=doomed",
	}
	if strings.Join(got, "\n") != strings.Join(wantMeta, "\n") {
		t.Fatalf("metadata actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantMeta, "\n"))
	}
	del := f.meta.Actions()[1].(k8stesting.DeleteActionImpl)
	if del.DeleteOptions.Preconditions == nil || *del.DeleteOptions.Preconditions.UID != "uid-c1" {
		t.Fatalf("per-object delete without uid precondition: %+v", del.DeleteOptions)
	}
	gotClient := describe(f.client.Actions())
	if len(gotClient) != 2 || gotClient[0] != "update namespaces/status" || gotClient[1] != "create namespaces/finalize" {
		t.Fatalf("client actions %v", gotClient)
	}
	status := lastActions(f.client)[0].(k8stesting.UpdateAction).GetObject().(*corev1.Namespace)
	for _, ct := range []corev1.NamespaceConditionType{
		corev1.NamespaceDeletionDiscoveryFailure, corev1.NamespaceDeletionGVParsingFailure,
		corev1.NamespaceDeletionContentFailure, corev1.NamespaceContentRemaining, corev1.NamespaceFinalizersRemaining,
	} {
		if c := condition(status, ct); c.Status != corev1.ConditionFalse {
			t.Fatalf("condition %s = %+v", ct, c)
		}
	}
	fin := lastActions(f.client)[1].(k8stesting.CreateAction).GetObject().(*corev1.Namespace)
	if len(fin.Spec.Finalizers) != 0 {
		t.Fatalf("finalizers left %v", fin.Spec.Finalizers)
	}
	// The other namespace is untouched.
	if _, err := f.meta.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "keep", "c2"); err != nil {
		t.Fatalf("foreign configmap: %v", err)
	}
}

func TestRemainingContentBlocksFinalize(t *testing.T) {
	f := newFixture(t, terminating("doomed"),
		obj("v1", "Pod", "doomed", "p1", "example.com/hold"),
		obj("v1", "Pod", "doomed", "p2"),
	)
	err := f.c.sync(context.Background(), "doomed")
	if !errors.Is(err, errContentRemaining) {
		t.Fatalf("want content remaining, got %v", err)
	}
	got := describe(f.client.Actions())
	if len(got) != 1 || got[0] != "update namespaces/status" {
		t.Fatalf("client actions %v", got)
	}
	status := lastActions(f.client)[0].(k8stesting.UpdateAction).GetObject().(*corev1.Namespace)
	rem := condition(status, corev1.NamespaceContentRemaining)
	if rem.Status != corev1.ConditionTrue || rem.Reason != "SomeResourcesRemain" || rem.Message != "Some resources are remaining: pods has 1 resource instances" {
		t.Fatalf("remaining condition %+v", rem)
	}
	fins := condition(status, corev1.NamespaceFinalizersRemaining)
	if fins.Status != corev1.ConditionTrue || fins.Message != "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances" {
		t.Fatalf("finalizers condition %+v", fins)
	}
}

func TestDeleteFailureSetsContentFailure(t *testing.T) {
	f := newFixture(t, terminating("doomed"), obj("v1", "ConfigMap", "doomed", "c1"))
	f.meta.PrependReactor("delete", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcd on fire")
	})
	if err := f.c.sync(context.Background(), "doomed"); err == nil {
		t.Fatal("expected error")
	}
	got := describe(f.client.Actions())
	if len(got) != 1 || got[0] != "update namespaces/status" {
		t.Fatalf("client actions %v", got)
	}
	status := lastActions(f.client)[0].(k8stesting.UpdateAction).GetObject().(*corev1.Namespace)
	if c := condition(status, corev1.NamespaceDeletionContentFailure); c.Status != corev1.ConditionTrue || c.Reason != "ContentDeletionFailed" {
		t.Fatalf("content failure condition %+v", c)
	}
}

func TestIgnoresLiveAndFinalizedNamespaces(t *testing.T) {
	live := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}, Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}}}
	f := newFixture(t, live, obj("v1", "Pod", "live", "p1"))
	if err := f.c.sync(context.Background(), "live"); err != nil {
		t.Fatal(err)
	}
	done := terminating("done")
	done.Spec.Finalizers = nil
	g := newFixture(t, done)
	if err := g.c.sync(context.Background(), "done"); err != nil {
		t.Fatal(err)
	}
	if len(f.meta.Actions())+len(describe(f.client.Actions()))+len(g.meta.Actions())+len(describe(g.client.Actions())) != 0 {
		t.Fatalf("unexpected actions %v %v %v %v", f.meta.Actions(), f.client.Actions(), g.meta.Actions(), g.client.Actions())
	}
}

// lastActions drops the discovery calls the fake clientset records.
func lastActions(c *fake.Clientset) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range c.Actions() {
		if r := a.GetResource().Resource; a.GetVerb() == "get" && (r == "group" || r == "resource") {
			continue
		}
		out = append(out, a)
	}
	return out
}
