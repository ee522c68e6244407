// Package volume is the PersistentVolume binder, after upstream's
// pkg/controller/volume/persistentvolume: it binds claims to volumes,
// keeps both phases (Pending/Bound/Lost for claims;
// Available/Bound/Released/Failed for volumes) and reclaims released
// volumes (Delete removes the PV object, Retain keeps it Released).
//
// Binding, as upstream:
//   - a claim with spec.volumeName (pre-bound by the user) takes that volume
//     if it is free; a volume whose claimRef names a claim (pre-bound, or
//     created for it by a provisioner) goes to that claim first;
//   - otherwise the smallest Available volume that matches wins: same
//     storageClassName, all requested access modes, capacity >= request,
//     same volumeMode, the claim's selector, and — once a node was
//     selected — a node affinity that admits that node;
//   - the PV is written first (claimRef, pv.kubernetes.io/bound-by-controller)
//     and then the claim (volumeName, pv.kubernetes.io/bind-completed,
//     pv.kubernetes.io/bound-by-controller), then both statuses.
//
// WaitForFirstConsumer: a claim of such a class is left Pending until a pod
// using it has a nodeName; the binder then records the node in the claim's
// volume.kubernetes.io/selected-node annotation and binds (or asks for
// provisioning) for that node. Normally the scheduler's VolumeBinding
// plugin decides before the pod is bound: it pre-binds the volume it chose
// (claimRef, which this binder completes at once even for such a claim) or
// sets selected-node itself; the consumer-pod path covers pods placed
// without the scheduler (spec.nodeName set by the user).
// Claims with no matching volume whose class names a provisioner get the
// volume.kubernetes.io/storage-provisioner annotation; the provisioner
// creates a PV pre-bound to the claim, which the binder then completes.
//
// Contract: sync is level-triggered on keys "claim:<ns>/<name>" and
// "volume:<name>".
package volume

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/controller"
)

// Annotations, as upstream.
const (
	AnnBindCompleted          = "pv.kubernetes.io/bind-completed"
	AnnBoundByController      = "pv.kubernetes.io/bound-by-controller"
	AnnSelectedNode           = "volume.kubernetes.io/selected-node"
	AnnStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	AnnBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	AnnDynamicallyProvisioned = "pv.kubernetes.io/provisioned-by"
)

// Controller binds claims and volumes.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	synced  []cache.InformerSynced
	pvs     corelisters.PersistentVolumeLister
	pvcs    corelisters.PersistentVolumeClaimLister
	classes storagelisters.StorageClassLister
	pods    corelisters.PodLister
	nodes   corelisters.NodeLister
}

// New returns the binder, adding handlers to the factory's informers.
func New(client kubernetes.Interface, f informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	pvInf, pvcInf := f.Core().V1().PersistentVolumes(), f.Core().V1().PersistentVolumeClaims()
	scInf, podInf, nodeInf := f.Storage().V1().StorageClasses(), f.Core().V1().Pods(), f.Core().V1().Nodes()
	c := &Controller{
		client: client, logger: logger.With("controller", "persistentvolume-binder"),
		queue: controller.NewQueue("persistentvolume-binder"),
		pvs:   pvInf.Lister(), pvcs: pvcInf.Lister(), classes: scInf.Lister(), pods: podInf.Lister(), nodes: nodeInf.Lister(),
		synced: []cache.InformerSynced{pvInf.Informer().HasSynced, pvcInf.Informer().HasSynced, scInf.Informer().HasSynced,
			podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
	}
	onPV := func(o any) {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		pv, ok := o.(*corev1.PersistentVolume)
		if !ok {
			return
		}
		c.queue.Add("volume:" + pv.Name)
		if ref := pv.Spec.ClaimRef; ref != nil {
			c.queue.Add("claim:" + ref.Namespace + "/" + ref.Name)
		}
	}
	onPVC := func(o any) {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		pvc, ok := o.(*corev1.PersistentVolumeClaim)
		if !ok {
			return
		}
		c.queue.Add("claim:" + pvc.Namespace + "/" + pvc.Name)
		if pvc.Spec.VolumeName != "" {
			c.queue.Add("volume:" + pvc.Spec.VolumeName)
		}
		// A deleted claim releases the volumes naming it.
		if pvs, err := c.pvs.List(labels.Everything()); err == nil {
			for _, pv := range pvs {
				if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == pvc.Namespace && ref.Name == pvc.Name {
					c.queue.Add("volume:" + pv.Name)
				}
			}
		}
	}
	for inf, h := range map[cache.SharedIndexInformer]func(any){pvInf.Informer(): onPV, pvcInf.Informer(): onPVC} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: h, UpdateFunc: func(_, n any) { h(n) }, DeleteFunc: h}); err != nil {
			return nil, fmt.Errorf("adding volume event handler: %w", err)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onPod,
		UpdateFunc: func(_, n any) { c.onPod(n) },
	}); err != nil {
		return nil, fmt.Errorf("adding pod event handler: %w", err)
	}
	return c, nil
}

// onPod wakes the claims of a scheduled pod (WaitForFirstConsumer).
func (c *Controller) onPod(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			c.queue.Add("claim:" + pod.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
		}
	}
}

// Run binds until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for volume informers: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

// Sync dispatches a claim or volume key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	kind, rest, _ := strings.Cut(key, ":")
	switch kind {
	case "claim":
		ns, name, err := cache.SplitMetaNamespaceKey(rest)
		if err != nil {
			return fmt.Errorf("parsing key %q: %w", key, err)
		}
		pvc, err := c.pvcs.PersistentVolumeClaims(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("getting claim %s: %w", rest, err)
		}
		return c.syncClaim(ctx, pvc.DeepCopy())
	case "volume":
		pv, err := c.pvs.Get(rest)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("getting volume %s: %w", rest, err)
		}
		return c.syncVolume(ctx, pv.DeepCopy())
	}
	return fmt.Errorf("unknown key %q", key)
}

func claimClass(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}

func (c *Controller) syncClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.DeletionTimestamp != nil {
		return nil
	}
	if pvc.Spec.VolumeName != "" {
		return c.syncBoundClaim(ctx, pvc)
	}
	class := claimClass(pvc)
	var sc *storagev1.StorageClass
	if class != "" {
		if s, err := c.classes.Get(class); err == nil {
			sc = s
		}
	}
	pvs, err := c.pvs.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing volumes: %w", err)
	}
	node := pvc.Annotations[AnnSelectedNode]
	if sc != nil && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer && node == "" {
		// The scheduler pre-binds the volume it chose for the pod's node
		// (claimRef); that binding is completed at once, as upstream.
		if pv := preBoundVolume(pvc, pvs); pv != nil {
			return c.bind(ctx, pv.DeepCopy(), pvc)
		}
		node = c.consumerNode(pvc)
		if node == "" {
			return c.setClaimPhase(ctx, pvc, corev1.ClaimPending)
		}
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, AnnSelectedNode, node)
		updated, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, pvc, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("recording selected node on claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
		}
		pvc = updated
	}
	var nodeObj *corev1.Node
	if node != "" {
		nodeObj, _ = c.nodes.Get(node)
		if nodeObj == nil {
			nodeObj = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{corev1.LabelHostname: node}}}
		}
	}
	if pv := FindBestMatch(pvc, pvs, nodeObj); pv != nil {
		return c.bind(ctx, pv.DeepCopy(), pvc)
	}
	if sc != nil && sc.Provisioner != "" && pvc.Annotations[AnnStorageProvisioner] != sc.Provisioner {
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, AnnStorageProvisioner, sc.Provisioner)
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, AnnBetaStorageProvisioner, sc.Provisioner)
		updated, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, pvc, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("asking for provisioning of claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
		}
		pvc = updated
	}
	return c.setClaimPhase(ctx, pvc, corev1.ClaimPending)
}

// consumerNode returns the node of a scheduled, live pod using the claim.
func (c *Controller) consumerNode(pvc *corev1.PersistentVolumeClaim) string {
	pods, err := c.pods.Pods(pvc.Namespace).List(labels.Everything())
	if err != nil {
		return ""
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				return p.Spec.NodeName
			}
		}
	}
	return ""
}

// syncBoundClaim handles a claim that names its volume.
func (c *Controller) syncBoundClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	pv, err := c.pvs.Get(pvc.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		if metav1.HasAnnotation(pvc.ObjectMeta, AnnBindCompleted) {
			return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
		}
		return c.setClaimPhase(ctx, pvc, corev1.ClaimPending)
	}
	if err != nil {
		return fmt.Errorf("getting volume %s: %w", pvc.Spec.VolumeName, err)
	}
	ref := pv.Spec.ClaimRef
	switch {
	case ref == nil || (ref.Namespace == pvc.Namespace && ref.Name == pvc.Name && (ref.UID == "" || ref.UID == pvc.UID)):
		return c.bind(ctx, pv.DeepCopy(), pvc)
	case metav1.HasAnnotation(pvc.ObjectMeta, AnnBindCompleted):
		return c.setClaimPhase(ctx, pvc, corev1.ClaimLost)
	}
	// The user's volume belongs to another claim: wait.
	return c.setClaimPhase(ctx, pvc, corev1.ClaimPending)
}

// bind writes the PV, then the claim, then both statuses; each step is
// skipped when already done, so a retry resumes where a failure stopped.
func (c *Controller) bind(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) error {
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.UID != pvc.UID {
		if ref == nil {
			metav1.SetMetaDataAnnotation(&pv.ObjectMeta, AnnBoundByController, "yes")
		}
		pv.Spec.ClaimRef = &corev1.ObjectReference{
			Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name,
			UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
		}
		updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("binding volume %s to claim %s/%s: %w", pv.Name, pvc.Namespace, pvc.Name, err)
		}
		pv = updated
	}
	if pv.Status.Phase != corev1.VolumeBound {
		pv.Status.Phase = corev1.VolumeBound
		pv.Status.Message, pv.Status.Reason = "", ""
		updated, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("marking volume %s bound: %w", pv.Name, err)
		}
		pv = updated
	}
	if pvc.Spec.VolumeName != pv.Name || !metav1.HasAnnotation(pvc.ObjectMeta, AnnBindCompleted) {
		if pvc.Spec.VolumeName == "" {
			metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, AnnBoundByController, "yes")
		}
		pvc.Spec.VolumeName = pv.Name
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, AnnBindCompleted, "yes")
		updated, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, pvc, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("binding claim %s/%s to volume %s: %w", pvc.Namespace, pvc.Name, pv.Name, err)
		}
		pvc = updated
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Status.Capacity == nil {
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.AccessModes = pv.Spec.AccessModes
		pvc.Status.Capacity = pv.Spec.Capacity.DeepCopy()
		if _, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("marking claim %s/%s bound: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

func (c *Controller) setClaimPhase(ctx context.Context, pvc *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase) error {
	if pvc.Status.Phase == phase {
		return nil
	}
	pvc = pvc.DeepCopy()
	pvc.Status.Phase = phase
	if _, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting claim %s/%s %s: %w", pvc.Namespace, pvc.Name, phase, err)
	}
	return nil
}

func (c *Controller) setVolumePhase(ctx context.Context, pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, msg string) error {
	if pv.Status.Phase == phase && pv.Status.Message == msg {
		return nil
	}
	pv = pv.DeepCopy()
	pv.Status.Phase, pv.Status.Message = phase, msg
	if _, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting volume %s %s: %w", pv.Name, phase, err)
	}
	return nil
}

func (c *Controller) syncVolume(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.DeletionTimestamp != nil {
		return nil
	}
	ref := pv.Spec.ClaimRef
	if ref == nil {
		if pv.Status.Phase == corev1.VolumeFailed {
			return nil
		}
		return c.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "")
	}
	pvc, err := c.pvcs.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting claim %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	if pvc != nil && ref.UID != "" && pvc.UID != ref.UID {
		pvc = nil // a new claim with the same name is not ours
	}
	if pvc == nil {
		if ref.UID == "" {
			// Pre-bound to a claim that does not exist yet.
			return c.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "")
		}
		return c.reclaim(ctx, pv)
	}
	switch pvc.Spec.VolumeName {
	case pv.Name:
		return c.setVolumePhase(ctx, pv, corev1.VolumeBound, "")
	case "":
		// The claim sync finishes the binding.
		c.queue.Add("claim:" + pvc.Namespace + "/" + pvc.Name)
		if pv.Status.Phase == "" || pv.Status.Phase == corev1.VolumePending {
			return c.setVolumePhase(ctx, pv, corev1.VolumeAvailable, "")
		}
		return nil
	}
	// The claim took another volume; give this one back if we bound it.
	if metav1.HasAnnotation(pv.ObjectMeta, AnnBoundByController) {
		pv = pv.DeepCopy()
		pv.Spec.ClaimRef = nil
		delete(pv.Annotations, AnnBoundByController)
		updated, err := c.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("unbinding volume %s: %w", pv.Name, err)
		}
		return c.setVolumePhase(ctx, updated, corev1.VolumeAvailable, "")
	}
	return nil
}

// reclaim handles a volume whose claim is gone.
func (c *Controller) reclaim(ctx context.Context, pv *corev1.PersistentVolume) error {
	switch pv.Spec.PersistentVolumeReclaimPolicy {
	case corev1.PersistentVolumeReclaimDelete:
		// Removing the data (a local-path directory) is the node agent's
		// job; here the object goes.
		err := c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting released volume %s: %w", pv.Name, err)
		}
		return nil
	case corev1.PersistentVolumeReclaimRecycle:
		return c.setVolumePhase(ctx, pv, corev1.VolumeFailed, "recycling is not supported")
	}
	return c.setVolumePhase(ctx, pv, corev1.VolumeReleased, "")
}

// preBoundVolume returns a usable volume whose claimRef names pvc.
func preBoundVolume(pvc *corev1.PersistentVolumeClaim, pvs []*corev1.PersistentVolume) *corev1.PersistentVolume {
	for _, pv := range pvs {
		if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == pvc.Namespace && ref.Name == pvc.Name && (ref.UID == "" || ref.UID == pvc.UID) &&
			pv.DeletionTimestamp == nil && pv.Status.Phase != corev1.VolumeReleased && pv.Status.Phase != corev1.VolumeFailed {
			return pv
		}
	}
	return nil
}

// FindBestMatch returns the volume for an unbound claim: one pre-bound to
// it, else the smallest free matching volume (nil when none matches).
// node, when set, must satisfy the volume's node affinity.
func FindBestMatch(pvc *corev1.PersistentVolumeClaim, pvs []*corev1.PersistentVolume, node *corev1.Node) *corev1.PersistentVolume {
	if pv := preBoundVolume(pvc, pvs); pv != nil {
		return pv
	}
	var best *corev1.PersistentVolume
	for _, pv := range pvs {
		if pv.Spec.ClaimRef != nil {
			continue
		}
		if !Matches(pvc, pv, node) {
			continue
		}
		if best == nil || pv.Spec.Capacity.Storage().Cmp(*best.Spec.Capacity.Storage()) < 0 {
			best = pv
		}
	}
	return best
}

// Matches reports whether a free volume satisfies a claim.
func Matches(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, node *corev1.Node) bool {
	if pv.DeletionTimestamp != nil || pv.Status.Phase == corev1.VolumeReleased || pv.Status.Phase == corev1.VolumeFailed {
		return false
	}
	if pv.Spec.StorageClassName != claimClass(pvc) {
		return false
	}
	have := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range pv.Spec.AccessModes {
		have[m] = true
	}
	for _, m := range pvc.Spec.AccessModes {
		if !have[m] {
			return false
		}
	}
	if req, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok && pv.Spec.Capacity.Storage().Cmp(req) < 0 {
		return false
	}
	if volumeMode(pvc.Spec.VolumeMode) != volumeMode(pv.Spec.VolumeMode) {
		return false
	}
	if pvc.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(pvc.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pv.Labels)) {
			return false
		}
	}
	if node != nil && pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
		sel, err := nodeaffinity.NewNodeSelector(pv.Spec.NodeAffinity.Required)
		if err != nil || !sel.Match(node) {
			return false
		}
	}
	return true
}

func volumeMode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}
