// Package nodeipam assigns every Node a pod CIDR (spec.podCIDR and
// spec.podCIDRs) carved out of the cluster CIDR.
//
// Contract: a node without spec.podCIDR gets the next free subnet of the
// configured size; subnets already recorded on nodes are re-learned from the
// informer cache before any allocation happens, so a restart never hands out a
// subnet twice; a deleted node's subnet becomes free again. The bitmap itself
// lives in CIDRSet, which does no I/O.
package nodeipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"skiff.dev/skiff/internal/controller"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Defaults match k3s: a /16 cluster network cut into one /24 per node.
const (
	DefaultClusterCIDR  = "10.42.0.0/16"
	DefaultNodeMaskSize = 24
)

// Config selects the address space handed to nodes.
type Config struct {
	// ClusterCIDR is the network pod CIDRs are taken from; empty means DefaultClusterCIDR.
	ClusterCIDR string
	// NodeMaskSize is the prefix length of each node's subnet; 0 means DefaultNodeMaskSize.
	NodeMaskSize int
}

// Controller allocates pod CIDRs to nodes.
type Controller struct {
	client     kubernetes.Interface
	nodeLister corelisters.NodeLister
	nodeSynced cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
	logger     *slog.Logger

	mu    sync.Mutex
	set   *CIDRSet
	owned map[string]netip.Prefix // node name -> subnet we know it holds
}

// New returns a controller allocating from cfg's cluster CIDR.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.NodeMaskSize == 0 {
		cfg.NodeMaskSize = DefaultNodeMaskSize
	}
	cluster, err := netip.ParsePrefix(cfg.ClusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("parsing cluster cidr: %w", err)
	}
	set, err := NewCIDRSet(cluster, cfg.NodeMaskSize)
	if err != nil {
		return nil, fmt.Errorf("creating cidr set: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	nodes := factory.Core().V1().Nodes()
	c := &Controller{
		client:     client,
		nodeLister: nodes.Lister(),
		nodeSynced: nodes.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodeipam"}),
		logger: logger.With("controller", "nodeipam"),
		set:    set,
		owned:  map[string]netip.Prefix{},
	}
	_, err = nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	if err != nil {
		return nil, fmt.Errorf("adding node event handler: %w", err)
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

// Run waits for the node cache, re-learns existing allocations and then
// processes nodes until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	if !cache.WaitForCacheSync(ctx.Done(), c.nodeSynced) {
		c.queue.ShutDown()
		return errors.New("waiting for node cache to sync")
	}
	if err := c.rebuild(); err != nil {
		c.queue.ShutDown()
		return err
	}
	c.logger.Info("starting workers", "workers", workers)
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.sync)
	return nil
}

// rebuild marks every subnet already present on a node as used. It must run
// before the first sync so that a restarted controller never reallocates.
func (c *Controller) rebuild() error {
	nodes, err := c.nodeLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		c.learnLocked(n)
	}
	return nil
}

func (c *Controller) learnLocked(n *corev1.Node) bool {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	learned := false
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			c.logger.Warn("ignoring unparsable pod cidr", "node", n.Name, "cidr", s)
			continue
		}
		if p.Addr().BitLen() != c.set.cluster.Addr().BitLen() {
			continue // another address family: not ours to manage
		}
		if err := c.set.Occupy(p); err != nil {
			c.logger.Warn("pod cidr outside the cluster cidr", "node", n.Name, "cidr", s)
			continue
		}
		c.owned[n.Name] = p.Masked()
		learned = true
	}
	return learned
}

// sync makes sure node name holds exactly one subnet of ours.
func (c *Controller) sync(ctx context.Context, name string) error {
	node, err := c.nodeLister.Get(name)
	if apierrors.IsNotFound(err) {
		c.release(name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting node %s: %w", name, err)
	}
	if node.Spec.PodCIDR != "" {
		c.mu.Lock()
		if prev, ok := c.owned[name]; ok && prev.String() != node.Spec.PodCIDR {
			// The node carries a different subnet than the one we remembered
			// (set by someone else); free ours and adopt theirs.
			_ = c.set.Release(prev)
			delete(c.owned, name)
		}
		c.learnLocked(node)
		c.mu.Unlock()
		return nil
	}

	c.mu.Lock()
	p, ok := c.owned[name]
	if !ok {
		p, err = c.set.AllocateNext()
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("allocating pod cidr for node %s: %w", name, err)
		}
		c.owned[name] = p
	}
	c.mu.Unlock()

	patch, err := json.Marshal(map[string]any{"spec": map[string]any{
		"podCIDR":  p.String(),
		"podCIDRs": []string{p.String()},
	}})
	if err != nil {
		return fmt.Errorf("encoding node patch: %w", err)
	}
	_, err = c.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		c.release(name)
		return nil
	}
	if err != nil {
		// Keep the subnet reserved for this node: the retry reuses it, which
		// stays correct even if the patch actually landed.
		return fmt.Errorf("patching pod cidr %s onto node %s: %w", p, name, err)
	}
	c.logger.Info("assigned pod cidr", "node", name, "cidr", p.String())
	return nil
}

func (c *Controller) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.owned[name]; ok {
		_ = c.set.Release(p)
		delete(c.owned, name)
		c.logger.Info("released pod cidr", "node", name, "cidr", p.String())
	}
}
