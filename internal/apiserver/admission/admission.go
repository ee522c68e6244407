// Package admission holds skiff's built-in admission plugins and the chain
// that runs them. Mutating plugins run after defaulting and before
// validation; validating plugins after validation. Plugins read other
// objects through a Getter (the registry stores), never from etcd directly.
//
// Built-in plugins, named as upstream's:
//   - NamespaceLifecycle: objects can only be created in a namespace that
//     exists and is not terminating; the default namespaces cannot be deleted.
//   - ServiceAccount: pods get serviceAccountName "default".
//   - DefaultTolerationSeconds: pods tolerate not-ready/unreachable NoExecute
//     taints for 300 s unless they say otherwise.
//   - Priority: pods get spec.priority from their PriorityClass (or the
//     global default), unknown classes are rejected.
package admission

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

// Getter reads objects the plugins need (namespaces, priority classes).
type Getter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
	ListPriorityClasses(ctx context.Context) ([]schedulingv1.PriorityClass, error)
}

// Chain runs the built-in plugins.
type Chain struct {
	get Getter
	// policy holds LimitRanger, DefaultStorageClass and ResourceQuota
	// (quota_plugins.go); nil unless get is also a PolicyGetter.
	policy *policyPlugins
}

// New returns the chain.
func New(get Getter) *Chain { return &Chain{get: get, policy: newPolicyPlugins(get)} }

// Hooks returns the generic.Hooks that run this chain (the policy plugins
// after the ones in this file).
func (c *Chain) Hooks() generic.Hooks {
	return generic.Hooks{Admit: c.admitAll, Validate: c.validateAll}
}

// Immortal namespaces cannot be deleted.
var immortal = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// Admit runs the mutating plugins.
func (c *Chain) Admit(ctx context.Context, r *registry.Resource, op generic.Operation, obj, old runtime.Object) error {
	if op != generic.OpCreate {
		return nil
	}
	if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
		setRequestor(ctx, csr)
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	addDefaultTolerations(pod)
	return c.admitPriority(ctx, pod)
}

// Validate runs the validating plugins.
func (c *Chain) Validate(ctx context.Context, r *registry.Resource, op generic.Operation, obj, old runtime.Object) error {
	gr := r.GroupResource()
	if op == generic.OpDelete && gr.String() == "namespaces" {
		m, _ := meta.Accessor(old)
		if immortal[m.GetName()] {
			return apierrors.NewForbidden(gr, m.GetName(), fmt.Errorf("this namespace may not be deleted"))
		}
		return nil
	}
	if op != generic.OpCreate || !r.Namespaced {
		return nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	ns := m.GetNamespace()
	nso, err := c.get.GetNamespace(ctx, ns)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
		}
		return err
	}
	if nso.DeletionTimestamp != nil || nso.Status.Phase == corev1.NamespaceTerminating {
		// Events may still be written into a terminating namespace.
		if gr.Resource == "events" {
			return nil
		}
		e := apierrors.NewForbidden(gr, m.GetName(), fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
		e.ErrStatus.Details.Causes = append(e.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: "NamespaceTerminating", Field: "metadata.namespace", Message: fmt.Sprintf("namespace %s is being terminated", ns),
		})
		return e
	}
	return nil
}

const defaultTolerationSeconds int64 = 300

func addDefaultTolerations(pod *corev1.Pod) {
	has := func(key string) bool {
		for _, t := range pod.Spec.Tolerations {
			if (t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)) &&
				(t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				return true
			}
		}
		return false
	}
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		if has(key) {
			continue
		}
		secs := defaultTolerationSeconds
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
			Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs,
		})
	}
}

// Built-in priority classes upstream always has.
var builtinPriorities = map[string]int32{
	"system-cluster-critical": 2000000000,
	"system-node-critical":    2000001000,
}

func (c *Chain) admitPriority(ctx context.Context, pod *corev1.Pod) error {
	name := pod.Spec.PriorityClassName
	var value int32
	var policy *corev1.PreemptionPolicy
	found := false
	if v, ok := builtinPriorities[name]; ok {
		value, found = v, true
	} else {
		classes, err := c.get.ListPriorityClasses(ctx)
		if err != nil {
			return err
		}
		pc := findPriorityClass(classes, name)
		if pc == nil && name != "" {
			// The cached list may not have seen a class created a moment
			// ago; as for namespaces, confirm with a live read.
			if fresh, ok := c.get.(FreshPriorityClassLister); ok {
				if classes, err = fresh.ListPriorityClassesFresh(ctx); err != nil {
					return err
				}
				pc = findPriorityClass(classes, name)
			}
		}
		if pc != nil {
			value, found = pc.Value, true
			policy = pc.PreemptionPolicy
			if name == "" {
				pod.Spec.PriorityClassName = pc.Name
			}
		}
	}
	if name != "" && !found {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, pod.Name, fmt.Errorf("no PriorityClass with name %s was found", name))
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != value {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, pod.Name, fmt.Errorf("the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name", *pod.Spec.Priority, value))
	}
	pod.Spec.Priority = &value
	if policy != nil && pod.Spec.PreemptionPolicy == nil {
		pod.Spec.PreemptionPolicy = policy
	}
	if pod.Spec.PreemptionPolicy == nil {
		p := corev1.PreemptLowerPriority
		pod.Spec.PreemptionPolicy = &p
	}
	return nil
}

// setRequestor records who asked for a certificate: the requestor fields
// of a CertificateSigningRequest always come from the authenticated user,
// never from the client.
func setRequestor(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) {
	u, ok := authn.UserFrom(ctx)
	if !ok {
		return
	}
	csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups = u.Name, u.UID, u.Groups
	csr.Spec.Extra = nil
	if len(u.Extra) > 0 {
		csr.Spec.Extra = map[string]certificatesv1.ExtraValue{}
		for k, v := range u.Extra {
			csr.Spec.Extra[k] = v
		}
	}
}

// FreshPriorityClassLister is implemented by getters whose
// ListPriorityClasses reads a cache: a pod naming a class the cache does
// not have yet is checked against a live read before it is refused.
type FreshPriorityClassLister interface {
	ListPriorityClassesFresh(ctx context.Context) ([]schedulingv1.PriorityClass, error)
}

// findPriorityClass is the class called name, or with name empty the
// global default; nil when there is none.
func findPriorityClass(classes []schedulingv1.PriorityClass, name string) *schedulingv1.PriorityClass {
	for i := range classes {
		pc := &classes[i]
		if (name != "" && pc.Name == name) || (name == "" && pc.GlobalDefault) {
			return pc
		}
	}
	return nil
}
