package kubelet

import (
	"context"
	"sync"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// objectCache serves the ConfigMaps and Secrets this node's pods use from
// one watch per object (fieldSelector metadata.name=NAME), as upstream's
// watch-based manager does: env and volumes read memory instead of the API
// server, and a change to an object kicks the pods that use it, so
// configMap and secret volumes are updated within moments. Objects no pod
// uses are not watched; until an object's watch has synced, reads go to
// the API server.
type objectCache struct {
	client  kubernetes.Interface
	onEvent func(types.UID)

	mu      sync.Mutex
	ctx     context.Context
	watches map[objKey]*objWatch
	podRefs map[types.UID][]objKey
}

type objKey struct{ kind, namespace, name string }

type objWatch struct {
	store  cache.Store
	synced func() bool
	stop   context.CancelFunc
	refs   map[types.UID]bool
}

func newObjectCache(client kubernetes.Interface, onEvent func(types.UID)) *objectCache {
	return &objectCache{client: client, onEvent: onEvent, watches: map[objKey]*objWatch{}, podRefs: map[types.UID][]objKey{}}
}

// start sets the context watches run in; before it, reads go to the API.
func (o *objectCache) start(ctx context.Context) {
	o.mu.Lock()
	o.ctx = ctx
	o.mu.Unlock()
}

// podObjectRefs lists the ConfigMaps and Secrets pod reads (env, envFrom,
// volumes, projected sources).
func podObjectRefs(pod *v1.Pod) []objKey {
	seen := map[objKey]bool{}
	var out []objKey
	add := func(kind, name string) {
		k := objKey{kind, pod.Namespace, name}
		if name != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	containers := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		for _, f := range c.EnvFrom {
			if f.ConfigMapRef != nil {
				add("configmaps", f.ConfigMapRef.Name)
			}
			if f.SecretRef != nil {
				add("secrets", f.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add("configmaps", r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add("secrets", r.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			add("configmaps", v.ConfigMap.Name)
		case v.Secret != nil:
			add("secrets", v.Secret.SecretName)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add("configmaps", s.ConfigMap.Name)
				}
				if s.Secret != nil {
					add("secrets", s.Secret.Name)
				}
			}
		}
	}
	return out
}

// register makes sure every object pod uses is watched and dropped
// references are released.
func (o *objectCache) register(pod *v1.Pod) {
	refs := podObjectRefs(pod)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx == nil {
		return
	}
	want := map[objKey]bool{}
	for _, k := range refs {
		want[k] = true
		w, ok := o.watches[k]
		if !ok {
			w = o.startWatch(k)
			o.watches[k] = w
		}
		w.refs[pod.UID] = true
	}
	for _, k := range o.podRefs[pod.UID] {
		if !want[k] {
			o.release(k, pod.UID)
		}
	}
	if len(refs) == 0 {
		delete(o.podRefs, pod.UID)
	} else {
		o.podRefs[pod.UID] = refs
	}
}

// unregister releases everything pod uid used.
func (o *objectCache) unregister(uid types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range o.podRefs[uid] {
		o.release(k, uid)
	}
	delete(o.podRefs, uid)
}

func (o *objectCache) release(k objKey, uid types.UID) {
	w, ok := o.watches[k]
	if !ok {
		return
	}
	delete(w.refs, uid)
	if len(w.refs) == 0 {
		w.stop()
		delete(o.watches, k)
	}
}

func (o *objectCache) startWatch(k objKey) *objWatch {
	ctx, cancel := context.WithCancel(o.ctx)
	sel := fields.OneTermEqualSelector("metadata.name", k.name).String()
	var lw *cache.ListWatch
	var obj runtime.Object
	switch k.kind {
	case "configmaps":
		c := o.client.CoreV1().ConfigMaps(k.namespace)
		obj = &v1.ConfigMap{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				opts.FieldSelector = sel
				return c.List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.FieldSelector = sel
				return c.Watch(ctx, opts)
			},
		}
	default:
		c := o.client.CoreV1().Secrets(k.namespace)
		obj = &v1.Secret{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				opts.FieldSelector = sel
				return c.List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.FieldSelector = sel
				return c.Watch(ctx, opts)
			},
		}
	}
	w := &objWatch{stop: cancel, refs: map[types.UID]bool{}}
	kick := func(any) {
		o.mu.Lock()
		uids := make([]types.UID, 0, len(w.refs))
		for uid := range w.refs {
			uids = append(uids, uid)
		}
		o.mu.Unlock()
		for _, uid := range uids {
			o.onEvent(uid)
		}
	}
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		// The clientset tells the reflector whether it can stream the
		// initial list (fake clients cannot).
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, o.client),
		ObjectType:    obj,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    kick,
			UpdateFunc: func(_, n any) { kick(n) },
			DeleteFunc: kick,
		},
	})
	w.store, w.synced = store, ctrl.HasSynced
	go ctrl.RunWithContext(ctx)
	return w
}

// get returns the object from its watch when synced; ok is false when the
// caller must ask the API server.
func (o *objectCache) get(k objKey) (runtime.Object, bool, error) {
	o.mu.Lock()
	w, ok := o.watches[k]
	o.mu.Unlock()
	if !ok || !w.synced() {
		return nil, false, nil
	}
	obj, exists, err := w.store.GetByKey(k.namespace + "/" + k.name)
	if err != nil {
		return nil, true, err
	}
	if !exists {
		return nil, true, apierrors.NewNotFound(schema.GroupResource{Resource: k.kind}, k.name)
	}
	return obj.(runtime.Object), true, nil
}

// clientGetter reads the objects env and volumes refer to: ConfigMaps and
// Secrets from the object cache when it has them, everything else (and
// tokens) from the API server.
type clientGetter struct {
	c     kubernetes.Interface
	cache *objectCache
}

func (g clientGetter) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	if g.cache != nil {
		if obj, ok, err := g.cache.get(objKey{"configmaps", ns, name}); ok {
			if err != nil {
				return nil, err
			}
			return obj.(*v1.ConfigMap), nil
		}
	}
	return g.c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (g clientGetter) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	if g.cache != nil {
		if obj, ok, err := g.cache.get(objKey{"secrets", ns, name}); ok {
			if err != nil {
				return nil, err
			}
			return obj.(*v1.Secret), nil
		}
	}
	return g.c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (g clientGetter) PersistentVolumeClaim(ctx context.Context, ns, name string) (*v1.PersistentVolumeClaim, error) {
	return g.c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
}

func (g clientGetter) PersistentVolume(ctx context.Context, name string) (*v1.PersistentVolume, error) {
	return g.c.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

func (g clientGetter) Token(ctx context.Context, ns, sa string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	return g.c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
}
