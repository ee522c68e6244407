package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config is one node's overlay.
type Config struct {
	NodeName string
	Backend  Backend
	// Device is the VXLAN device (vxlan backend); its LocalIP is also the
	// public IP announced for host-gw, and PodCIDR this node's pod CIDR.
	Device DeviceConfig
	// Resync re-applies the desired state this often even without Node
	// events, repairing routes someone else deleted (default 30 s).
	Resync time.Duration
}

// Deps are the controller's collaborators.
type Deps struct {
	Client kubernetes.Interface
	// Applier programs the namespace; nil means the process's own.
	Applier *Applier
	Logger  *slog.Logger
}

// Controller keeps this node's routes, neighbours and FDB entries in line
// with the cluster's Nodes and publishes this node's annotations.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	apply  *Applier
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	lister corelisters.NodeLister
	// skipped is the last pass's left-out peers, so each is logged once.
	skipped map[string]string
}

const syncKey = "overlay"

// New validates cfg.
func New(cfg Config, deps Deps) (*Controller, error) {
	if _, err := ParseBackend(string(cfg.Backend)); err != nil {
		return nil, err
	}
	if cfg.NodeName == "" || deps.Client == nil {
		return nil, errors.New("creating overlay controller: node name and client are required")
	}
	if cfg.Backend != None && (!cfg.Device.LocalIP.Is4() || !cfg.Device.PodCIDR.Addr().Is4()) {
		return nil, fmt.Errorf("creating overlay controller: the %s backend needs an IPv4 node address and pod CIDR (have %v, %v)", cfg.Backend, cfg.Device.LocalIP, cfg.Device.PodCIDR)
	}
	cfg.Device.defaults()
	if cfg.Device.PodCIDR.IsValid() {
		cfg.Device.PodCIDR = cfg.Device.PodCIDR.Masked()
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if deps.Applier == nil {
		deps.Applier = NewApplier(nil)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Controller{cfg: cfg, client: deps.Client, apply: deps.Applier, log: deps.Logger.With("component", "overlay", "backend", cfg.Backend)}, nil
}

// Prepare sets up the node side before any pod starts: the VXLAN device for
// vxlan, or removes a leftover one otherwise. It returns the MTU pods should
// use (0: leave the CNI plugin's default).
func (c *Controller) Prepare() (int, error) {
	switch c.cfg.Backend {
	case VXLAN:
		dev, err := c.apply.EnsureDevice(c.cfg.Device)
		if err != nil {
			return 0, err
		}
		return PodMTU(VXLAN, dev.UplinkMTU), nil
	case HostGW:
		if err := c.apply.RemoveDevice(c.cfg.Device.Name); err != nil {
			return 0, err
		}
		up, err := c.apply.Uplink(c.cfg.Device.LocalIP)
		if err != nil {
			return 0, fmt.Errorf("finding the uplink: %w", err)
		}
		return PodMTU(HostGW, up.Attrs().MTU), nil
	default:
		return 0, c.apply.RemoveDevice(c.cfg.Device.Name)
	}
}

// Run watches Nodes and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(c.client, 0)
	nodes := factory.Core().V1().Nodes()
	c.lister = nodes.Lister()
	c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second))
	defer c.queue.ShutDown()
	enqueue := func(any) { c.queue.Add(syncKey) }
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			if relevantChange(old.(*corev1.Node), cur.(*corev1.Node)) {
				c.queue.Add(syncKey)
			}
		},
	}); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return ctx.Err()
	}
	go func() {
		t := time.NewTicker(c.cfg.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				c.queue.ShutDown()
				return
			case <-t.C:
				c.queue.Add(syncKey)
			}
		}
	}()
	c.queue.Add(syncKey)
	for {
		key, quit := c.queue.Get()
		if quit {
			return nil
		}
		all, err := c.lister.List(labels.Everything())
		if err == nil {
			err = c.Sync(ctx, all)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("reconciling pod network; retrying", "err", err)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

// relevantChange ignores the status heartbeats every node writes.
func relevantChange(old, cur *corev1.Node) bool {
	if old.Spec.PodCIDR != cur.Spec.PodCIDR {
		return true
	}
	for _, k := range []string{AnnotationBackend, AnnotationVXLANMAC, AnnotationPublicIP} {
		if old.Annotations[k] != cur.Annotations[k] {
			return true
		}
	}
	return internalIP(old) != internalIP(cur)
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// Sync is one level-triggered pass over nodes: make sure the device exists,
// announce this node, program every peer and drop what is no longer wanted.
func (c *Controller) Sync(ctx context.Context, nodes []*corev1.Node) error {
	var mac string
	dev := ""
	switch c.cfg.Backend {
	case VXLAN:
		d, err := c.apply.EnsureDevice(c.cfg.Device)
		if err != nil {
			return err
		}
		mac, dev = d.MAC.String(), c.cfg.Device.Name
	default:
		if err := c.apply.RemoveDevice(c.cfg.Device.Name); err != nil {
			return err
		}
	}
	var errs []error
	peers := make([]Peer, 0, len(nodes))
	for _, n := range nodes {
		if n.Name == c.cfg.NodeName {
			errs = append(errs, c.announce(ctx, n, mac))
			continue
		}
		peers = append(peers, PeerFromNode(n))
	}
	st, skipped := Desired(Options{Backend: c.cfg.Backend, Device: c.cfg.Device.Name, Self: c.cfg.NodeName, SelfCIDR: c.cfg.Device.PodCIDR}, peers)
	c.logSkipped(skipped)
	changes, err := c.apply.Apply(st, dev)
	if changes > 0 {
		c.log.Info("programmed pod network", "peers", len(st.Routes), "changes", changes)
	}
	errs = append(errs, err)
	return errors.Join(errs...)
}

// logSkipped reports peers left out, once per change of reason: a CIDR
// conflict is a misconfiguration (agents joined with the same --pod-cidr)
// and warned about; a peer that has not announced itself yet is routine.
func (c *Controller) logSkipped(skipped map[string]string) {
	for name, why := range skipped {
		if c.skipped[name] == why {
			continue
		}
		if strings.Contains(why, "overlaps") || strings.Contains(why, "claimed") || strings.Contains(why, "backend") {
			c.log.Warn("peer not reachable from this node's pods", "peer", name, "reason", why)
		} else {
			c.log.Info("peer not programmed yet", "peer", name, "reason", why)
		}
	}
	c.skipped = skipped
}

// Announcement is the annotations a node publishes for backend b.
func Announcement(b Backend, publicIP netip.Addr, mac string) map[string]*string {
	s := func(v string) *string { return &v }
	out := map[string]*string{AnnotationBackend: s(string(b)), AnnotationPublicIP: s(publicIP.String()), AnnotationVXLANMAC: nil}
	if b == VXLAN {
		out[AnnotationVXLANMAC] = s(mac)
	}
	return out
}

func (c *Controller) announce(ctx context.Context, n *corev1.Node, mac string) error {
	want := Announcement(c.cfg.Backend, c.cfg.Device.LocalIP, mac)
	same := true
	for k, v := range want {
		have, ok := n.Annotations[k]
		if (v == nil && ok) || (v != nil && (!ok || have != *v)) {
			same = false
		}
	}
	if same {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return fmt.Errorf("encoding node annotations: %w", err)
	}
	_, err = c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("announcing the pod network on node %s: %w", n.Name, err)
	}
	c.log.Info("announced pod network", "node", n.Name, "mac", mac, "publicIP", c.cfg.Device.LocalIP)
	return nil
}
