// Package localpath is skiff's built-in dynamic provisioner
// "skiff.io/local-path", like k3s's local-path-provisioner: a claim of a
// class with this provisioner, once the binder has asked for provisioning
// (volume.kubernetes.io/storage-provisioner) and a node was selected
// (volume.kubernetes.io/selected-node, set for WaitForFirstConsumer
// classes), gets a hostPath PersistentVolume "pvc-<claim uid>" at
// <basePath>/<pv name> on that node, with node affinity to it, the claim's
// size, access modes and volume mode, the class's reclaim policy, and a
// claimRef pre-binding it to the claim (the binder completes the binding).
//
// basePath is the class parameter "basePath" (the default class created by
// the server points it at <data dir>/storage), else Config.BasePath.
// Creating and removing the directory is the node agent's job; this
// controller only writes the API object.
package localpath

import (
	"context"
	"fmt"
	"log/slog"
	"path"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/controller/volume"
)

// ProvisionerName is what StorageClasses name to use this provisioner.
const ProvisionerName = "skiff.io/local-path"

// DefaultBasePath is used when neither the class nor Config sets one.
const DefaultBasePath = "/var/lib/skiff/storage"

// Config tunes the provisioner.
type Config struct {
	BasePath string
}

// Controller provisions local-path volumes.
type Controller struct {
	cfg     Config
	client  kubernetes.Interface
	logger  *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	synced  []cache.InformerSynced
	pvcs    corelisters.PersistentVolumeClaimLister
	pvs     corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	nodes   corelisters.NodeLister
}

// New returns the provisioner.
func New(cfg Config, client kubernetes.Interface, f informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if cfg.BasePath == "" {
		cfg.BasePath = DefaultBasePath
	}
	if logger == nil {
		logger = slog.Default()
	}
	pvcInf, pvInf := f.Core().V1().PersistentVolumeClaims(), f.Core().V1().PersistentVolumes()
	scInf, nodeInf := f.Storage().V1().StorageClasses(), f.Core().V1().Nodes()
	c := &Controller{
		cfg: cfg, client: client, logger: logger.With("controller", "local-path-provisioner"),
		queue: controller.NewQueue("local-path-provisioner"),
		pvcs:  pvcInf.Lister(), pvs: pvInf.Lister(), classes: scInf.Lister(), nodes: nodeInf.Lister(),
		synced: []cache.InformerSynced{pvcInf.Informer().HasSynced, pvInf.Informer().HasSynced,
			scInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
	}
	if _, err := pvcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { controller.Enqueue(c.queue, c.logger, o) },
		UpdateFunc: func(_, n any) { controller.Enqueue(c.queue, c.logger, n) },
	}); err != nil {
		return nil, fmt.Errorf("adding claim event handler: %w", err)
	}
	return c, nil
}

// Run provisions until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for local-path informers: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

// Sync provisions a volume for one claim when it needs one.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("parsing key %q: %w", key, err)
	}
	pvc, err := c.pvcs.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting claim %s: %w", key, err)
	}
	if pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil || pvc.Annotations[volume.AnnStorageProvisioner] != ProvisionerName {
		return nil
	}
	if pvc.Spec.StorageClassName == nil {
		return nil
	}
	sc, err := c.classes.Get(*pvc.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting storage class %s: %w", *pvc.Spec.StorageClassName, err)
	}
	if sc.Provisioner != ProvisionerName {
		return nil
	}
	nodeName := pvc.Annotations[volume.AnnSelectedNode]
	if nodeName == "" {
		// A node-local volume needs its node; Immediate classes are
		// not supported, as k3s's provisioner.
		c.logger.Info("claim has no selected node; use a WaitForFirstConsumer class", "claim", key)
		return nil
	}
	var node *corev1.Node
	if n, err := c.nodes.Get(nodeName); err == nil {
		node = n
	}
	pv := Volume(pvc, sc, nodeName, node, c.cfg.BasePath)
	if _, err := c.pvs.Get(pv.Name); err == nil {
		return nil
	}
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating volume for claim %s: %w", key, err)
	}
	c.logger.Info("provisioned volume", "claim", key, "pv", pv.Name, "node", nodeName)
	return nil
}

// Volume is the PersistentVolume provisioned for pvc of class sc on node
// nodeName (node, when known, gives its hostname label).
func Volume(pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass, nodeName string, node *corev1.Node, basePath string) *corev1.PersistentVolume {
	if p := sc.Parameters["basePath"]; p != "" {
		basePath = p
	}
	hostname := nodeName
	if node != nil && node.Labels[corev1.LabelHostname] != "" {
		hostname = node.Labels[corev1.LabelHostname]
	}
	name := "pvc-" + string(pvc.UID)
	policy := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		policy = *sc.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{volume.AnnDynamicallyProvisioned: ProvisionerName, volume.AnnSelectedNode: nodeName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              sc.Name,
			VolumeMode:                    pvc.Spec.VolumeMode,
			MountOptions:                  sc.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path.Join(basePath, name), Type: &hostPathType},
			},
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name,
				UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}},
			}}}},
		},
	}
}
