// Package loadbalancer is skiff's built-in load balancer controller: it
// gives every Service of type LoadBalancer (without a loadBalancerClass,
// which would name another implementation) its external addresses in
// status.loadBalancer.ingress. The node agents' service proxies then serve
// those addresses like NodePorts, on every node (internal/proxy).
//
// Two modes:
//
//   - node addresses (the default, like k3s's ServiceLB): the ingress is
//     the InternalIP of every Ready node, kept current as nodes come, go or
//     change readiness;
//   - an address pool (`skiff server --lb-address-pool CIDR|first-last,…`):
//     each service gets one address of its own, spec.loadBalancerIP when it
//     asks for one in the pool. Addresses already recorded in services'
//     status are re-learned from the informer cache before any allocation,
//     so a restart never hands one out twice; an address is released when
//     its service is deleted, changes type or moves to another class, and
//     services waiting on an exhausted pool are retried then.
//
// A service that is no longer of type LoadBalancer has its ingress cleared.
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"skiff.dev/skiff/internal/controller"
)

// Config selects where addresses come from.
type Config struct {
	// AddressPool is a comma-separated list of IPv4 CIDRs or first-last
	// ranges; empty means the nodes' InternalIPs.
	AddressPool string
}

// Controller assigns load balancer ingress addresses.
type Controller struct {
	client   kubernetes.Interface
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger

	mu      sync.Mutex
	pool    *Pool           // nil in node-address mode
	pending map[string]bool // services waiting for a free pool address
}

// New returns a controller; recorder may be nil.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Controller{
		client:   client,
		queue:    controller.NewQueue("loadbalancer"),
		recorder: recorder,
		log:      logger.With("controller", "loadbalancer"),
		pending:  map[string]bool{},
	}
	if cfg.AddressPool != "" {
		p, err := ParsePool(cfg.AddressPool)
		if err != nil {
			return nil, err
		}
		c.pool = p
	}
	svcs := factory.Core().V1().Services()
	c.services = svcs.Lister()
	if _, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(o, n any) {
			os, ok1 := o.(*corev1.Service)
			ns, ok2 := n.(*corev1.Service)
			if ok1 && ok2 && !relevantChange(os, ns) {
				return
			}
			c.enqueue(n)
		},
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding service event handler: %w", err)
	}
	c.synced = append(c.synced, svcs.Informer().HasSynced)
	if c.pool == nil {
		nodes := factory.Core().V1().Nodes()
		c.nodes = nodes.Lister()
		if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { c.enqueueAll() },
			UpdateFunc: func(o, n any) {
				on, ok1 := o.(*corev1.Node)
				nn, ok2 := n.(*corev1.Node)
				if ok1 && ok2 && nodeReady(on) == nodeReady(nn) && slices.Equal(on.Status.Addresses, nn.Status.Addresses) {
					return
				}
				c.enqueueAll()
			},
			DeleteFunc: func(any) { c.enqueueAll() },
		}); err != nil {
			return nil, fmt.Errorf("adding node event handler: %w", err)
		}
		c.synced = append(c.synced, nodes.Informer().HasSynced)
	}
	return c, nil
}

// relevantChange: only type, class, requested IP and the status itself
// matter; endpoints churn and the like do not reach the queue.
func relevantChange(o, n *corev1.Service) bool {
	return o.Spec.Type != n.Spec.Type || !equalPtr(o.Spec.LoadBalancerClass, n.Spec.LoadBalancerClass) ||
		o.Spec.LoadBalancerIP != n.Spec.LoadBalancerIP || !ingressEqual(o.Status.LoadBalancer.Ingress, n.Status.LoadBalancer.Ingress)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.log, obj) }

func (c *Controller) enqueueAll() {
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			c.enqueue(s)
		}
	}
}

// Run waits for the caches, re-learns the pool addresses services hold
// and processes services until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controller.WaitForSync(ctx, c.synced...) {
		c.queue.ShutDown()
		return errors.New("waiting for service and node caches")
	}
	if err := c.rebuild(); err != nil {
		c.queue.ShutDown()
		return err
	}
	c.log.Info("starting workers", "workers", workers, "pool", c.pool != nil)
	controller.RunWorkers(ctx, c.log, c.queue, workers, c.sync)
	return nil
}

// rebuild marks the pool addresses found in services' status as taken,
// oldest service first, so that of two services claiming one address (a
// race in an earlier leader) the older keeps it and the other is moved.
func (c *Controller) rebuild() error {
	if c.pool == nil {
		return nil
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	sort.Slice(svcs, func(i, j int) bool {
		a, b := svcs[i].CreationTimestamp, svcs[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range svcs {
		if !ours(s) {
			continue
		}
		key := s.Namespace + "/" + s.Name
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil && c.pool.Contains(a) && c.pool.Owner(a) == "" {
				_, _ = c.pool.Allocate(key, a)
				break
			}
		}
	}
	return nil
}

// ours reports whether svc is a LoadBalancer this controller implements.
func ours(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// sync converges one service's status.loadBalancer.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.release(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !ours(svc) {
		c.release(key)
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return c.updateStatus(ctx, svc, nil)
		}
		return nil
	}
	want, err := c.desired(svc, key)
	if err != nil {
		c.log.Warn("cannot assign a load balancer address", "service", key, "err", err)
		if c.recorder != nil {
			c.recorder.Event(svc, corev1.EventTypeWarning, "AllocationFailed", err.Error())
		}
		// Whatever the status shows is not this service's (it would have
		// been kept): clear it rather than advertise another's address.
		// Not retried on a timer: a released address or a changed
		// request brings the service back.
		if len(svc.Status.LoadBalancer.Ingress) > 0 {
			return c.updateStatus(ctx, svc, nil)
		}
		return nil
	}
	if ingressEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	if err := c.updateStatus(ctx, svc, want); err != nil {
		return err
	}
	if c.recorder != nil && len(want) > 0 {
		c.recorder.Eventf(svc, corev1.EventTypeNormal, "IPAllocated", "Assigned load balancer address(es) %s", ingressString(want))
	}
	return nil
}

// desired computes the ingress of a LoadBalancer service, allocating from
// the pool when there is one.
func (c *Controller) desired(svc *corev1.Service, key string) ([]corev1.LoadBalancerIngress, error) {
	vip := corev1.LoadBalancerIPModeVIP
	if c.pool == nil {
		nodes, err := c.nodes.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("listing nodes: %w", err)
		}
		var out []corev1.LoadBalancerIngress
		for _, a := range nodeAddrs(nodes) {
			out = append(out, corev1.LoadBalancerIngress{IP: a, IPMode: &vip})
		}
		return out, nil
	}
	var want netip.Addr
	if svc.Spec.LoadBalancerIP != "" {
		a, err := netip.ParseAddr(svc.Spec.LoadBalancerIP)
		if err != nil {
			return nil, fmt.Errorf("spec.loadBalancerIP %q is not an IP address", svc.Spec.LoadBalancerIP)
		}
		want = a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !want.IsValid() {
		if _, held := c.pool.Get(key); !held {
			// Keep the address the status already shows when it is free:
			// a status written before a restart stays valid.
			for _, ing := range svc.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(ing.IP); err == nil && c.pool.Contains(a) && c.pool.Owner(a) == "" {
					want = a
					break
				}
			}
		}
	}
	a, err := c.pool.Allocate(key, want)
	if err != nil {
		c.pending[key] = true
		return nil, err
	}
	delete(c.pending, key)
	return []corev1.LoadBalancerIngress{{IP: a.String(), IPMode: &vip}}, nil
}

// release frees key's pool address and retries the services that were
// waiting for one.
func (c *Controller) release(key string) {
	if c.pool == nil {
		return
	}
	c.mu.Lock()
	delete(c.pending, key)
	freed := c.pool.Release(key)
	var retry []string
	if freed {
		for k := range c.pending {
			retry = append(retry, k)
		}
	}
	c.mu.Unlock()
	for _, k := range retry {
		c.queue.Add(k)
	}
}

func (c *Controller) updateStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	s := svc.DeepCopy()
	s.Status.LoadBalancer.Ingress = ingress
	if _, err := c.client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("updating load balancer status of %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// nodeAddrs is the sorted IPv4 InternalIPs of the Ready nodes, or of all
// nodes when none is Ready (a cluster starting up still gets addresses).
func nodeAddrs(nodes []*corev1.Node) []string {
	collect := func(readyOnly bool) []string {
		var out []string
		for _, n := range nodes {
			if readyOnly && !nodeReady(n) {
				continue
			}
			for _, a := range n.Status.Addresses {
				if ip, err := netip.ParseAddr(a.Address); a.Type == corev1.NodeInternalIP && err == nil && ip.Is4() {
					out = append(out, ip.String())
				}
			}
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	if out := collect(true); len(out) > 0 {
		return out
	}
	return collect(false)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		// ipMode is written but not compared: a server that drops it
		// must not make every sync rewrite the status.
		if a[i].IP != b[i].IP || a[i].Hostname != b[i].Hostname {
			return false
		}
	}
	return true
}

func ingressString(in []corev1.LoadBalancerIngress) string {
	s := ""
	for i, x := range in {
		if i > 0 {
			s += ", "
		}
		s += x.IP
	}
	return s
}
