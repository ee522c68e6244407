package admission

import (
	"context"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

type fakeGetter struct {
	ns      map[string]*corev1.Namespace
	classes []schedulingv1.PriorityClass
}

func (f *fakeGetter) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	if n, ok := f.ns[name]; ok {
		return n, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name)
}

func (f *fakeGetter) ListPriorityClasses(ctx context.Context) ([]schedulingv1.PriorityClass, error) {
	return f.classes, nil
}

var (
	podsR = &registry.Resource{GroupVersion: corev1.SchemeGroupVersion, Resource: "pods", Kind: "Pod", Namespaced: true}
	nsR   = &registry.Resource{GroupVersion: corev1.SchemeGroupVersion, Resource: "namespaces", Kind: "Namespace"}
	csrR  = &registry.Resource{GroupVersion: certificatesv1.SchemeGroupVersion, Resource: "certificatesigningrequests", Kind: "CertificateSigningRequest"}
)

func TestPodDefaultsFromAdmission(t *testing.T) {
	c := New(&fakeGetter{classes: []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
		{ObjectMeta: metav1.ObjectMeta{Name: "default-class"}, Value: 7, GlobalDefault: true},
	}})
	ctx := context.Background()

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
	if err := c.Admit(ctx, podsR, generic.OpCreate, pod, nil); err != nil {
		t.Fatalf("admit: %v", err)
	}
	if pod.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName = %q, want default", pod.Spec.ServiceAccountName)
	}
	if len(pod.Spec.Tolerations) != 2 || *pod.Spec.Tolerations[0].TolerationSeconds != 300 {
		t.Errorf("tolerations = %+v, want not-ready and unreachable for 300s", pod.Spec.Tolerations)
	}
	if pod.Spec.Priority == nil || *pod.Spec.Priority != 7 || pod.Spec.PriorityClassName != "default-class" {
		t.Errorf("priority = %v/%q, want the global default 7", pod.Spec.Priority, pod.Spec.PriorityClassName)
	}

	// A pod that already tolerates unreachable keeps its own toleration.
	secs := int64(5)
	own := &corev1.Pod{Spec: corev1.PodSpec{PriorityClassName: "high", Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs}}}}
	if err := c.Admit(ctx, podsR, generic.OpCreate, own, nil); err != nil {
		t.Fatalf("admit: %v", err)
	}
	if len(own.Spec.Tolerations) != 2 || *own.Spec.Tolerations[0].TolerationSeconds != 5 {
		t.Errorf("tolerations = %+v, want the pod's own unreachable toleration kept and not-ready added", own.Spec.Tolerations)
	}
	if *own.Spec.Priority != 1000 {
		t.Errorf("priority = %d, want 1000 from class high", *own.Spec.Priority)
	}

	unknown := &corev1.Pod{Spec: corev1.PodSpec{PriorityClassName: "nope"}}
	if err := c.Admit(ctx, podsR, generic.OpCreate, unknown, nil); !apierrors.IsForbidden(err) {
		t.Errorf("unknown priority class: err = %v, want Forbidden", err)
	}
}

// staleGetter's cached list lags behind a class created a moment ago; the
// live list has it.
type staleGetter struct {
	fakeGetter
	fresh []schedulingv1.PriorityClass
}

func (g *staleGetter) ListPriorityClassesFresh(context.Context) ([]schedulingv1.PriorityClass, error) {
	return g.fresh, nil
}

func TestPriorityClassMissingFromCacheIsReadLive(t *testing.T) {
	g := &staleGetter{fresh: []schedulingv1.PriorityClass{{ObjectMeta: metav1.ObjectMeta{Name: "it-low"}, Value: 10}}}
	c := New(g)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "low", Namespace: "default"}, Spec: corev1.PodSpec{PriorityClassName: "it-low"}}
	if err := c.Admit(context.Background(), podsR, generic.OpCreate, pod, nil); err != nil {
		t.Fatalf("admitting a pod whose class only the live read has: %v", err)
	}
	if pod.Spec.Priority == nil || *pod.Spec.Priority != 10 {
		t.Errorf("priority = %v, want 10", pod.Spec.Priority)
	}
	gone := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}, Spec: corev1.PodSpec{PriorityClassName: "nope"}}
	if err := c.Admit(context.Background(), podsR, generic.OpCreate, gone, nil); !apierrors.IsForbidden(err) {
		t.Errorf("class in neither list: err = %v, want Forbidden", err)
	}
}

func TestNamespaceLifecycle(t *testing.T) {
	now := metav1.Now()
	c := New(&fakeGetter{ns: map[string]*corev1.Namespace{
		"live":  {ObjectMeta: metav1.ObjectMeta{Name: "live"}},
		"dying": {ObjectMeta: metav1.ObjectMeta{Name: "dying", DeletionTimestamp: &now}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}},
	}})
	ctx := context.Background()
	pod := func(ns string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}}
	}
	if err := c.Validate(ctx, podsR, generic.OpCreate, pod("live"), nil); err != nil {
		t.Errorf("create in live namespace: %v", err)
	}
	if err := c.Validate(ctx, podsR, generic.OpCreate, pod("missing"), nil); !apierrors.IsNotFound(err) {
		t.Errorf("create in missing namespace: err = %v, want NotFound", err)
	}
	err := c.Validate(ctx, podsR, generic.OpCreate, pod("dying"), nil)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create in terminating namespace: err = %v, want Forbidden", err)
	}
	if want := "unable to create new content in namespace dying because it is being terminated"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not contain %q", err.Error(), want)
	}
	if err := c.Validate(ctx, nsR, generic.OpDelete, nil, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting kube-system: err = %v, want Forbidden", err)
	}
	if err := c.Validate(ctx, nsR, generic.OpDelete, nil, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}}); err != nil {
		t.Errorf("deleting an ordinary namespace: %v", err)
	}
}

func TestCSRRequestorComesFromTheUser(t *testing.T) {
	c := New(&fakeGetter{})
	ctx := authn.WithUser(context.Background(), &authn.User{Name: "alice", UID: "u1", Groups: []string{"devs", "system:authenticated"}})
	csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Username: "mallory", Groups: []string{"system:masters"}}}
	if err := c.Admit(ctx, csrR, generic.OpCreate, csr, nil); err != nil {
		t.Fatalf("admit: %v", err)
	}
	if csr.Spec.Username != "alice" || csr.Spec.UID != "u1" || len(csr.Spec.Groups) != 2 || csr.Spec.Groups[0] != "devs" {
		t.Errorf("requestor = %q/%q/%v, want alice/u1/[devs system:authenticated]", csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups)
	}
}
