// Package controllertest holds test helpers shared by the controllers'
// unit tests.
package controllertest

import (
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
)

// ResourceVersions makes a fake clientset keep resource versions as the
// API server does (the fake's object tracker does not): every create and
// update stores the object with a new version, and an update carrying a
// version other than the stored one fails with 409 Conflict (an update
// without one is unconditional). Objects the clientset was built with
// keep theirs. It returns a function that counts the conflicts so far.
func ResourceVersions(client *fake.Clientset) (conflicts func() int) {
	var mu sync.Mutex
	next, failed := 1000, 0
	stamp := func(obj runtime.Object) (runtime.Object, error) {
		obj = obj.DeepCopyObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		next++
		m.SetResourceVersion(strconv.Itoa(next))
		return obj, nil
	}
	client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		ca := a.(core.CreateAction)
		obj, err := stamp(ca.GetObject())
		if err != nil {
			return true, nil, err
		}
		if err := client.Tracker().Create(a.GetResource(), obj, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	client.PrependReactor("update", "*", func(a core.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		ua := a.(core.UpdateAction)
		m, err := meta.Accessor(ua.GetObject())
		if err != nil {
			return true, nil, err
		}
		cur, err := client.Tracker().Get(a.GetResource(), a.GetNamespace(), m.GetName())
		if err != nil {
			return true, nil, err
		}
		cm, _ := meta.Accessor(cur)
		if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
			failed++
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(),
				errConflict{sent: rv, stored: cm.GetResourceVersion()})
		}
		obj, err := stamp(ua.GetObject())
		if err != nil {
			return true, nil, err
		}
		if err := client.Tracker().Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
}

type errConflict struct{ sent, stored string }

func (e errConflict) Error() string {
	return "the object has been modified: resourceVersion " + e.sent + ", stored " + e.stored
}
