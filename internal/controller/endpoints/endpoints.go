// Package endpoints maintains a core/v1 Endpoints object for every Service
// that has a selector: ready and not-ready addresses of the matching pods,
// with named target ports resolved per pod.
//
// Contract: sync(namespace/name) is level-triggered; it reads the service,
// its pods and the current Endpoints from listers, computes the desired
// subsets with the pure function DesiredSubsets and writes only when they,
// or the labels, differ. Pod events enqueue the services selecting the pod
// directly, so a readiness flip reaches the Endpoints within one sync.
package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"skiff.dev/skiff/internal/controller"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Controller keeps Endpoints in step with Services and Pods.
type Controller struct {
	client    kubernetes.Interface
	svcLister corelisters.ServiceLister
	// podHandlers enqueue the services selecting a changed pod.
	podHandlers cache.ResourceEventHandlerFuncs
	podLister   corelisters.PodLister
	epLister    corelisters.EndpointsLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]
	logger      *slog.Logger
}

// New returns a controller using the factory's service, pod and endpoints informers.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	svcs := factory.Core().V1().Services()
	pods := factory.Core().V1().Pods()
	eps := factory.Core().V1().Endpoints()
	c := &Controller{
		client:    client,
		svcLister: svcs.Lister(),
		podLister: pods.Lister(),
		epLister:  eps.Lister(),
		synced:    []cache.InformerSynced{svcs.Informer().HasSynced, pods.Informer().HasSynced, eps.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoints"}),
		logger: logger.With("controller", "endpoints"),
	}
	if _, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding service event handler: %w", err)
	}
	c.podHandlers = PodHandlers(svcs.Informer().GetIndexer(), func(k string) { c.queue.Add(k) })
	if _, err := pods.Informer().AddEventHandler(c.podHandlers); err != nil {
		return nil, fmt.Errorf("adding pod event handler: %w", err)
	}
	if _, err := eps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Someone deleted our Endpoints: recreate them if the service remains.
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding endpoints event handler: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// Run processes services until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		c.queue.ShutDown()
		return errors.New("waiting for service, pod and endpoints caches to sync")
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.sync)
	return nil
}

func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("splitting key %q: %w", key, err)
	}
	svc, err := c.svcLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		err = c.client.CoreV1().Endpoints(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting endpoints %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting service %s: %w", key, err)
	}
	if svc.Spec.Selector == nil {
		return nil // endpoints of selectorless services belong to their users
	}
	pods, err := c.podLister.Pods(namespace).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return fmt.Errorf("listing pods for service %s: %w", key, err)
	}
	subsets := DesiredSubsets(svc, pods, c.logger)

	current, err := c.epLister.Endpoints(namespace).Get(name)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return fmt.Errorf("getting endpoints %s: %w", key, err)
	}
	if create {
		current = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	}
	wantLabels := DesiredLabels(svc)
	if !create && equality.Semantic.DeepEqual(current.Subsets, subsets) &&
		maps.Equal(current.Labels, wantLabels) {
		return nil
	}

	ep := current.DeepCopy()
	ep.Subsets = subsets
	ep.Labels = wantLabels
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	if t := triggerTime(svc, pods, current); !t.IsZero() {
		ep.Annotations[corev1.EndpointsLastChangeTriggerTime] = t.UTC().Format(time.RFC3339Nano)
	} else {
		delete(ep.Annotations, corev1.EndpointsLastChangeTriggerTime)
	}
	if create {
		_, err = c.client.CoreV1().Endpoints(namespace).Create(ctx, ep, metav1.CreateOptions{})
	} else {
		_, err = c.client.CoreV1().Endpoints(namespace).Update(ctx, ep, metav1.UpdateOptions{})
	}
	if err != nil {
		if create && apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // the namespace is going away with the service
		}
		return fmt.Errorf("writing endpoints %s: %w", key, err)
	}
	return nil
}

// DesiredLabels are the service's labels plus the headless marker.
func DesiredLabels(svc *corev1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+1)
	maps.Copy(out, svc.Labels)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	} else {
		delete(out, corev1.IsHeadlessService)
	}
	return out
}

// triggerTime is the earliest change not yet reflected in current: the
// service's creation or a pod readiness transition newer than the time
// recorded on the existing Endpoints. Zero when none is known.
func triggerTime(svc *corev1.Service, pods []*corev1.Pod, current *corev1.Endpoints) time.Time {
	var prev time.Time
	if s := current.Annotations[corev1.EndpointsLastChangeTriggerTime]; s != "" {
		prev, _ = time.Parse(time.RFC3339Nano, s)
	}
	var best time.Time
	consider := func(t time.Time) {
		if t.IsZero() || !t.After(prev) {
			return
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	consider(svc.CreationTimestamp.Time)
	for _, p := range pods {
		consider(PodTriggerTime(p))
	}
	return best
}

// DesiredSubsets computes the Endpoints subsets for svc from the pods its
// selector matches. It is pure: same inputs, same (sorted) output.
func DesiredSubsets(svc *corev1.Service, pods []*corev1.Pod, logger *slog.Logger) []corev1.EndpointSubset {
	tolerateUnready := svc.Spec.PublishNotReadyAddresses
	b := newSubsetBuilder()
	for _, pod := range pods {
		if !ShouldPodBeInEndpoints(pod, tolerateUnready) {
			continue
		}
		addr := corev1.EndpointAddress{
			IP: PodIP(pod),
			TargetRef: &corev1.ObjectReference{
				Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			},
		}
		if pod.Spec.NodeName != "" {
			n := pod.Spec.NodeName
			addr.NodeName = &n
		}
		if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
			addr.Hostname = pod.Spec.Hostname
		}
		ready := tolerateUnready || IsPodReady(pod)
		if len(svc.Spec.Ports) == 0 {
			// Headless services without ports still publish addresses for DNS.
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				b.add(nil, addr, ready)
			}
			continue
		}
		var ports []corev1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, err := FindPort(pod, sp)
			if err != nil {
				if logger != nil {
					logger.Debug("skipping port for pod", "pod", pod.Namespace+"/"+pod.Name, "port", sp.Name, "err", err)
				}
				continue
			}
			ports = append(ports, corev1.EndpointPort{
				Name: sp.Name, Port: port, Protocol: protocolOf(sp.Protocol), AppProtocol: sp.AppProtocol,
			})
		}
		if len(ports) == 0 {
			continue
		}
		b.add(ports, addr, ready)
	}
	return b.subsets()
}

// subsetBuilder groups addresses by their exact port list, as upstream's
// RepackSubsets does, so pods resolving a named port alike share a subset.
type subsetBuilder struct {
	groups map[string]*group
}

type group struct {
	ports           []corev1.EndpointPort
	ready, notReady map[string]corev1.EndpointAddress
}

func newSubsetBuilder() *subsetBuilder { return &subsetBuilder{groups: map[string]*group{}} }

func (b *subsetBuilder) add(ports []corev1.EndpointPort, addr corev1.EndpointAddress, ready bool) {
	slices.SortFunc(ports, comparePorts)
	key := portsKey(ports)
	g := b.groups[key]
	if g == nil {
		g = &group{ports: ports, ready: map[string]corev1.EndpointAddress{}, notReady: map[string]corev1.EndpointAddress{}}
		b.groups[key] = g
	}
	ak := addr.IP + "/" + string(addr.TargetRef.UID)
	if ready {
		g.ready[ak] = addr
		delete(g.notReady, ak)
	} else if _, isReady := g.ready[ak]; !isReady {
		g.notReady[ak] = addr
	}
}

func (b *subsetBuilder) subsets() []corev1.EndpointSubset {
	keys := slices.Sorted(maps.Keys(b.groups))
	out := make([]corev1.EndpointSubset, 0, len(keys))
	for _, k := range keys {
		g := b.groups[k]
		out = append(out, corev1.EndpointSubset{
			Addresses:         sortedAddrs(g.ready),
			NotReadyAddresses: sortedAddrs(g.notReady),
			Ports:             g.ports,
		})
	}
	return out
}

func sortedAddrs(m map[string]corev1.EndpointAddress) []corev1.EndpointAddress {
	if len(m) == 0 {
		return nil
	}
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b corev1.EndpointAddress) int {
		return cmp.Or(cmp.Compare(a.IP, b.IP), cmp.Compare(a.TargetRef.UID, b.TargetRef.UID))
	})
	return out
}

func comparePorts(a, b corev1.EndpointPort) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
}

func portsKey(ports []corev1.EndpointPort) string {
	var sb strings.Builder
	for _, p := range ports {
		ap := ""
		if p.AppProtocol != nil {
			ap = *p.AppProtocol
		}
		sb.WriteString(p.Name + "/" + strconv.Itoa(int(p.Port)) + "/" + string(p.Protocol) + "/" + ap + ";")
	}
	return sb.String()
}
