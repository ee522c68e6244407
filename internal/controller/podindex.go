package controller

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// ControllerUIDIndex names a pod informer index from the UID of a pod's
// controller (ownerReference with controller=true) to the pod; pods
// without a controller are indexed under their namespace's orphan key.
// A controller that syncs on every pod event then reads its own pods and
// the orphans it might adopt, not every pod of the namespace: with two
// 5,000-pod ReplicaSets in a namespace (a rolling update) each sync
// touched 10,000 pods before.
const ControllerUIDIndex = "skiff.dev/controller-uid"

func orphanIndexKey(namespace string) string { return "orphan/" + namespace }

func controllerUIDIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return []string{orphanIndexKey(p.Namespace)}, nil
}

// AddControllerUIDIndex adds ControllerUIDIndex to a pod informer unless
// another controller sharing the informer already did.
func AddControllerUIDIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[ControllerUIDIndex]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{ControllerUIDIndex: controllerUIDIndexFunc}); err != nil {
		return fmt.Errorf("adding pod controller-UID index: %w", err)
	}
	return nil
}

// PodsControlledOrOrphaned returns the pods in namespace controlled by the
// object with uid (owned), and the orphans there: every pod a RefManager
// for that controller could keep, release or adopt (pods controlled by
// anyone else it leaves alone). The order is unspecified.
func PodsControlledOrOrphaned(indexer cache.Indexer, namespace string, uid types.UID) (owned, orphans []*v1.Pod, err error) {
	o, err := indexer.ByIndex(ControllerUIDIndex, string(uid))
	if err != nil {
		return nil, nil, fmt.Errorf("reading pods of controller %s: %w", uid, err)
	}
	r, err := indexer.ByIndex(ControllerUIDIndex, orphanIndexKey(namespace))
	if err != nil {
		return nil, nil, fmt.Errorf("reading orphan pods in %s: %w", namespace, err)
	}
	return podsIn(o, namespace), podsIn(r, namespace), nil
}

func podsIn(objs []any, namespace string) []*v1.Pod {
	out := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && p.Namespace == namespace {
			out = append(out, p)
		}
	}
	return out
}
