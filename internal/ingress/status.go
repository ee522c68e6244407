package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// StatusConfig configures the status writer. Zero values take the
// defaults noted.
type StatusConfig struct {
	// Disable turns the writer off on this node.
	Disable bool
	// LeaseNamespace/LeaseName name the election Lease
	// (kube-system/skiff-ingress-status).
	LeaseNamespace, LeaseName string
	// LeaseDuration, RenewDeadline, RetryPeriod: 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ResyncPeriod re-checks every Ingress even without events (1m).
	ResyncPeriod time.Duration
}

// ExcludeFromLBLabel keeps a node's address out of the status, as it
// keeps the node out of upstream's load balancers.
const ExcludeFromLBLabel = corev1.LabelNodeExcludeBalancers

type statusWriter struct {
	cfg        StatusConfig
	controller string
	identity   string
	client     kubernetes.Interface
	log        *slog.Logger
	nodes      corelisters.NodeLister
	classes    networkinglisters.IngressClassLister
	ingresses  networkinglisters.IngressLister
	synced     []cache.InformerSynced
	dirty      chan struct{}
}

func newStatusWriter(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) (*statusWriter, error) {
	sc := cfg.Status
	if sc.LeaseNamespace == "" {
		sc.LeaseNamespace = metav1.NamespaceSystem
	}
	if sc.LeaseName == "" {
		sc.LeaseName = "skiff-ingress-status"
	}
	if sc.LeaseDuration <= 0 {
		sc.LeaseDuration = 15 * time.Second
	}
	if sc.RenewDeadline <= 0 {
		sc.RenewDeadline = 10 * time.Second
	}
	if sc.RetryPeriod <= 0 {
		sc.RetryPeriod = 2 * time.Second
	}
	if sc.ResyncPeriod <= 0 {
		sc.ResyncPeriod = time.Minute
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("creating ingress status writer: a node name is required for the lease identity")
	}
	w := &statusWriter{
		cfg: sc, controller: cfg.ControllerName, identity: cfg.NodeName, client: client,
		log: log.With("lease", sc.LeaseNamespace+"/"+sc.LeaseName), dirty: make(chan struct{}, 1),
	}
	nodeInf := factory.Core().V1().Nodes()
	classInf := factory.Networking().V1().IngressClasses()
	ingInf := factory.Networking().V1().Ingresses()
	for _, inf := range []cache.SharedIndexInformer{nodeInf.Informer(), classInf.Informer(), ingInf.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.markDirty() },
			UpdateFunc: func(any, any) { w.markDirty() },
			DeleteFunc: func(any) { w.markDirty() },
		}); err != nil {
			return nil, fmt.Errorf("adding ingress status event handler: %w", err)
		}
		w.synced = append(w.synced, inf.HasSynced)
	}
	w.nodes, w.classes, w.ingresses = nodeInf.Lister(), classInf.Lister(), ingInf.Lister()
	return w, nil
}

func (w *statusWriter) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// run takes part in the election until ctx ends, writing status while it
// leads.
func (w *statusWriter) run(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: w.cfg.LeaseNamespace, Name: w.cfg.LeaseName},
		Client:     w.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: w.identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: w.cfg.LeaseDuration, RenewDeadline: w.cfg.RenewDeadline, RetryPeriod: w.cfg.RetryPeriod,
			ReleaseOnCancel: true, Name: w.cfg.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					w.log.Info("writing ingress status", "identity", w.identity)
					w.lead(ctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			w.log.Error("configuring ingress status election", "err", err)
			return
		}
		// Run returns when leadership is lost; stand again.
		le.Run(ctx)
	}
}

// lead syncs on every change (and every ResyncPeriod) while leading.
func (w *statusWriter) lead(ctx context.Context) {
	tick := time.NewTicker(w.cfg.ResyncPeriod)
	defer tick.Stop()
	w.markDirty()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
		case <-tick.C:
		}
		if err := w.sync(ctx); err != nil {
			w.log.Warn("updating ingress status", "err", err)
			// Retry soon; a conflict means a newer object is on its way.
			time.AfterFunc(time.Second, w.markDirty)
		}
	}
}

// sync sets status.loadBalancer.ingress on every Ingress of our classes.
func (w *statusWriter) sync(ctx context.Context) error {
	nodes, err := w.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	classes, err := w.classes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing ingress classes: %w", err)
	}
	ings, err := w.ingresses.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing ingresses: %w", err)
	}
	ours := ClassesOf(w.controller, classes)
	want := LoadBalancerStatus(nodes)
	var errs []error
	for _, ing := range ings {
		if !ours.Handles(ing) || apiequality.Semantic.DeepEqual(ing.Status.LoadBalancer, want) {
			continue
		}
		cp := ing.DeepCopy()
		cp.Status.LoadBalancer = want
		_, err := w.client.NetworkingV1().Ingresses(cp.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: "skiff-ingress"})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("ingress %s/%s: %w", cp.Namespace, cp.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d ingress status update(s) failed, first: %w", len(errs), errs[0])
	}
	return nil
}

// LoadBalancerStatus is the status every Ingress of class skiff gets: the
// InternalIP (else ExternalIP) of each Ready node that is not excluded
// from load balancers, sorted, without duplicates.
func LoadBalancerStatus(nodes []*corev1.Node) networkingv1.IngressLoadBalancerStatus {
	var ips []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, n := range nodes {
		if _, excluded := n.Labels[ExcludeFromLBLabel]; excluded || !nodeReady(n) {
			continue
		}
		ip, ok := nodeAddress(n)
		if ok && !seen[ip] {
			seen[ip] = true
			ips = append(ips, ip)
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	var st networkingv1.IngressLoadBalancerStatus
	for _, ip := range ips {
		st.Ingress = append(st.Ingress, networkingv1.IngressLoadBalancerIngress{IP: ip.String()})
	}
	return st
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeAddress(n *corev1.Node) (netip.Addr, bool) {
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != t {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}
