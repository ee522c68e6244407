package replicaset

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
)

// adapter hides whether the controller works on ReplicaSets or
// ReplicationControllers; everything is presented as an apps/v1 ReplicaSet.
type adapter interface {
	kind() schema.GroupVersionKind
	informer() cache.SharedIndexInformer
	toRS(obj any) (*appsv1.ReplicaSet, bool)
	// get returns the cached object, or the one this controller's last
	// status write returned while the cache has not caught up with it.
	get(namespace, name string) (*appsv1.ReplicaSet, error)
	list(namespace string) ([]*appsv1.ReplicaSet, error)
	fresh(ctx context.Context, namespace, name string) (metav1.Object, error)
	// updateStatus writes rs's status (rs as get returned it, status
	// changed) and returns the server's answer.
	updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error)
	// isEcho reports whether obj, delivered by the informer, is exactly
	// what this controller's last status write of it returned.
	isEcho(obj any) bool
	// forget drops what is remembered of a deleted object's writes.
	forget(key string)
	// eventObject returns the object events about rs are recorded on.
	eventObject(rs *appsv1.ReplicaSet) runtime.Object
}

type rsAdapter struct {
	inf     cache.SharedIndexInformer
	lister  appslisters.ReplicaSetLister
	client  kubernetes.Interface
	written controller.LastWrites[*appsv1.ReplicaSet]
}

func newRSAdapter(client kubernetes.Interface, inf appsinformers.ReplicaSetInformer) *rsAdapter {
	return &rsAdapter{inf: inf.Informer(), lister: inf.Lister(), client: client}
}

func (a *rsAdapter) kind() schema.GroupVersionKind {
	return appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
}
func (a *rsAdapter) informer() cache.SharedIndexInformer { return a.inf }
func (a *rsAdapter) toRS(obj any) (*appsv1.ReplicaSet, bool) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	return rs, ok
}
func (a *rsAdapter) get(ns, name string) (*appsv1.ReplicaSet, error) {
	rs, err := a.lister.ReplicaSets(ns).Get(name)
	if err != nil {
		return nil, err
	}
	return a.written.Newest(ns+"/"+name, rs), nil
}
func (a *rsAdapter) list(ns string) ([]*appsv1.ReplicaSet, error) {
	return a.lister.ReplicaSets(ns).List(labels.Everything())
}
func (a *rsAdapter) fresh(ctx context.Context, ns, name string) (metav1.Object, error) {
	return a.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
}
func (a *rsAdapter) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	out, err := a.client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	a.written.Wrote(rs.Namespace+"/"+rs.Name, rs.ResourceVersion, out)
	return out, nil
}
func (a *rsAdapter) isEcho(obj any) bool {
	rs, ok := obj.(*appsv1.ReplicaSet)
	return ok && a.written.IsEcho(rs.Namespace+"/"+rs.Name, rs)
}
func (a *rsAdapter) forget(key string)                                { a.written.Forget(key) }
func (a *rsAdapter) eventObject(rs *appsv1.ReplicaSet) runtime.Object { return rs }

type rcAdapter struct {
	inf     cache.SharedIndexInformer
	lister  corelisters.ReplicationControllerLister
	client  kubernetes.Interface
	written controller.LastWrites[*v1.ReplicationController]
}

func newRCAdapter(client kubernetes.Interface, inf coreinformers.ReplicationControllerInformer) *rcAdapter {
	return &rcAdapter{inf: inf.Informer(), lister: inf.Lister(), client: client}
}

func (a *rcAdapter) kind() schema.GroupVersionKind {
	return v1.SchemeGroupVersion.WithKind("ReplicationController")
}
func (a *rcAdapter) informer() cache.SharedIndexInformer { return a.inf }
func (a *rcAdapter) toRS(obj any) (*appsv1.ReplicaSet, bool) {
	rc, ok := obj.(*v1.ReplicationController)
	if !ok {
		return nil, false
	}
	return RCToRS(rc), true
}
func (a *rcAdapter) get(ns, name string) (*appsv1.ReplicaSet, error) {
	rc, err := a.newest(ns, name)
	if err != nil {
		return nil, err
	}
	return RCToRS(rc), nil
}
func (a *rcAdapter) newest(ns, name string) (*v1.ReplicationController, error) {
	rc, err := a.lister.ReplicationControllers(ns).Get(name)
	if err != nil {
		return nil, err
	}
	return a.written.Newest(ns+"/"+name, rc), nil
}
func (a *rcAdapter) list(ns string) ([]*appsv1.ReplicaSet, error) {
	rcs, err := a.lister.ReplicationControllers(ns).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	out := make([]*appsv1.ReplicaSet, 0, len(rcs))
	for _, rc := range rcs {
		out = append(out, RCToRS(rc))
	}
	return out, nil
}
func (a *rcAdapter) fresh(ctx context.Context, ns, name string) (metav1.Object, error) {
	return a.client.CoreV1().ReplicationControllers(ns).Get(ctx, name, metav1.GetOptions{})
}
func (a *rcAdapter) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	cached, err := a.newest(rs.Namespace, rs.Name)
	if err != nil {
		return nil, fmt.Errorf("reading replicationcontroller %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	rc := cached.DeepCopy()
	// The version rs was read at: a status computed from an older
	// object than the cache holds now must not overwrite it unseen.
	rc.ResourceVersion = rs.ResourceVersion
	rc.Status = rsStatusToRC(rs.Status)
	out, err := a.client.CoreV1().ReplicationControllers(rs.Namespace).UpdateStatus(ctx, rc, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of replicationcontroller %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	a.written.Wrote(rs.Namespace+"/"+rs.Name, rc.ResourceVersion, out)
	return RCToRS(out), nil
}
func (a *rcAdapter) isEcho(obj any) bool {
	rc, ok := obj.(*v1.ReplicationController)
	return ok && a.written.IsEcho(rc.Namespace+"/"+rc.Name, rc)
}
func (a *rcAdapter) forget(key string) { a.written.Forget(key) }
func (a *rcAdapter) eventObject(rs *appsv1.ReplicaSet) runtime.Object {
	return &v1.ReplicationController{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ReplicationController"},
		ObjectMeta: *rs.ObjectMeta.DeepCopy(),
	}
}

// RCToRS converts a ReplicationController to the equivalent ReplicaSet. An
// empty selector means the template's labels, as the API server defaults it.
func RCToRS(rc *v1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: *rc.ObjectMeta.DeepCopy(),
	}
	rs.Spec.Replicas = rc.Spec.Replicas
	if rs.Spec.Replicas == nil {
		one := int32(1)
		rs.Spec.Replicas = &one
	}
	rs.Spec.MinReadySeconds = rc.Spec.MinReadySeconds
	sel := rc.Spec.Selector
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template.DeepCopy()
		if len(sel) == 0 {
			sel = rc.Spec.Template.Labels
		}
	}
	ml := make(map[string]string, len(sel))
	for k, v := range sel {
		ml[k] = v
	}
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: ml}
	rs.Status = appsv1.ReplicaSetStatus{
		Replicas:             rc.Status.Replicas,
		FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
		ReadyReplicas:        rc.Status.ReadyReplicas,
		AvailableReplicas:    rc.Status.AvailableReplicas,
		ObservedGeneration:   rc.Status.ObservedGeneration,
	}
	for _, c := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rs
}

func rsStatusToRC(s appsv1.ReplicaSetStatus) v1.ReplicationControllerStatus {
	out := v1.ReplicationControllerStatus{
		Replicas:             s.Replicas,
		FullyLabeledReplicas: s.FullyLabeledReplicas,
		ReadyReplicas:        s.ReadyReplicas,
		AvailableReplicas:    s.AvailableReplicas,
		ObservedGeneration:   s.ObservedGeneration,
	}
	for _, c := range s.Conditions {
		out.Conditions = append(out.Conditions, v1.ReplicationControllerCondition{
			Type: v1.ReplicationControllerConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return out
}
