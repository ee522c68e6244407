package statefulset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/controller/history"
)

// Sync converges the StatefulSet named by key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	shared, err := c.setLister.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting statefulset %s: %w", key, err)
	}
	set := shared.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil // validation rejects these; nothing sane to do
	}
	all, err := c.podLister.Pods(ns).List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing pods of statefulset %s: %w", key, err)
	}
	m := &controller.RefManager{Controller: set, Kind: setKind, Selector: sel,
		CanAdopt: controller.FreshCanAdopt(set.UID, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		})}
	claimed, err := m.ClaimPods(ctx, all, controller.RealPodControl{Client: c.client, Recorder: c.recorder})
	if err != nil {
		return fmt.Errorf("claiming pods of statefulset %s: %w", key, err)
	}
	var pods []*v1.Pod
	for _, p := range claimed {
		if _, ok := ordinalOf(set, p); ok {
			pods = append(pods, p)
		}
	}

	revs, err := history.List(c.revLister, ns, sel, set.UID)
	if err != nil {
		return err
	}
	data, err := history.TemplatePatch(&set.Spec.Template)
	if err != nil {
		return err
	}
	collisions := int32(0)
	if set.Status.CollisionCount != nil {
		collisions = *set.Status.CollisionCount
	}
	updateRev, revs, err := history.Current(ctx, c.client, set, setKind, set.Spec.Template.Labels, data, revs, &collisions)
	if err != nil {
		return fmt.Errorf("recording revision of statefulset %s: %w", key, err)
	}
	currentRev := updateRev
	for _, r := range revs {
		if r.Name == set.Status.CurrentRevision {
			currentRev = r
		}
	}
	currentTemplate := &set.Spec.Template
	if currentRev != updateRev {
		if currentTemplate, err = history.TemplateFrom(currentRev); err != nil {
			return err
		}
	}

	syncErr := c.reconcile(ctx, set, pods, currentRev, updateRev, currentTemplate)

	live := map[string]bool{currentRev.Name: true, updateRev.Name: true}
	for _, p := range pods {
		live[set.Name+"-"+p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	limit := int32(10)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	truncErr := history.Truncate(ctx, c.client, revs, live, limit)
	statusErr := c.updateStatus(ctx, set, pods, currentRev, updateRev, collisions)
	return errors.Join(syncErr, truncErr, statusErr)
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicasOf(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

// ordinalOf parses p's ordinal when p is named <set>-<ordinal>.
func ordinalOf(set *appsv1.StatefulSet, p *v1.Pod) (int, bool) {
	rest, ok := strings.CutPrefix(p.Name, set.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

func podName(set *appsv1.StatefulSet, ordinal int) string {
	return fmt.Sprintf("%s-%d", set.Name, ordinal)
}

func claimName(set *appsv1.StatefulSet, claim string, ordinal int) string {
	return fmt.Sprintf("%s-%s-%d", claim, set.Name, ordinal)
}

func isTerminal(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodFailed || p.Status.Phase == v1.PodSucceeded
}

// healthy is upstream's "running and ready and not terminating".
func (c *Controller) healthy(set *appsv1.StatefulSet, p *v1.Pod) bool {
	return p.Status.Phase == v1.PodRunning && p.DeletionTimestamp == nil &&
		controller.IsPodAvailable(p, set.Spec.MinReadySeconds, c.clock.Now())
}

func (c *Controller) requeueForAvailability(set *appsv1.StatefulSet, p *v1.Pod) {
	if d, ok := controller.UntilAvailable(p, set.Spec.MinReadySeconds, c.clock.Now()); ok {
		c.queue.AddAfter(set.Namespace+"/"+set.Name, d+10*time.Millisecond)
	}
}

func revisionOf(p *v1.Pod) string { return p.Labels[appsv1.ControllerRevisionHashLabelKey] }

// reconcile creates, deletes and replaces pods one step at a time.
func (c *Controller) reconcile(ctx context.Context, set *appsv1.StatefulSet, pods []*v1.Pod, currentRev, updateRev *appsv1.ControllerRevision, currentTemplate *v1.PodTemplateSpec) error {
	start, n := startOrdinal(set), replicasOf(set)
	ordered := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	replicas := make([]*v1.Pod, n)
	var condemned []*v1.Pod
	for _, p := range pods {
		o, _ := ordinalOf(set, p)
		if o >= start && o < start+n {
			replicas[o-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	sort.Slice(condemned, func(i, j int) bool {
		a, _ := ordinalOf(set, condemned[i])
		b, _ := ordinalOf(set, condemned[j])
		return a > b
	})
	if set.DeletionTimestamp != nil {
		return nil
	}
	var errs []error

	// Replace pods that finished: a StatefulSet's pods run forever.
	for i, p := range replicas {
		if p != nil && isTerminal(p) && p.DeletionTimestamp == nil {
			if err := c.deletePod(ctx, set, p); err != nil {
				return err
			}
			replicas[i] = nil
			if ordered {
				return nil
			}
		}
	}
	for i, p := range replicas {
		ordinal := start + i
		if p == nil {
			template, rev := &set.Spec.Template, updateRev
			if partitioned(set, ordinal) {
				template, rev = currentTemplate, currentRev
			}
			if err := c.createPod(ctx, set, template, history.HashOf(rev), ordinal); err != nil {
				errs = append(errs, err)
				if ordered {
					return errors.Join(errs...)
				}
			}
			if ordered {
				return nil
			}
			continue
		}
		if err := c.ensureClaims(ctx, set, p, ordinal, false); err != nil {
			errs = append(errs, err)
		}
		if ordered && !c.healthy(set, p) {
			c.requeueForAvailability(set, p)
			return errors.Join(errs...)
		}
	}

	// Scale down: highest ordinal first; OrderedReady waits for each.
	for _, p := range condemned {
		if p.DeletionTimestamp != nil {
			if ordered {
				return errors.Join(errs...)
			}
			continue
		}
		if ordered && !c.healthy(set, p) && !isTerminal(p) {
			return errors.Join(errs...)
		}
		o, _ := ordinalOf(set, p)
		if err := c.ensureClaims(ctx, set, p, o, true); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.deletePod(ctx, set, p); err != nil {
			errs = append(errs, err)
		}
		if ordered {
			return errors.Join(errs...)
		}
	}
	if len(errs) > 0 || set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return errors.Join(errs...)
	}

	// RollingUpdate: from the highest ordinal down to the partition,
	// replace pods of other revisions, at most maxUnavailable at a time.
	maxUnavailable := 1
	partition := 0
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		if ru.MaxUnavailable != nil {
			v, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, n, false)
			if err == nil {
				maxUnavailable = max(v, 1)
			}
		}
	}
	unavailable := 0
	for _, p := range replicas {
		if p == nil || !c.healthy(set, p) {
			unavailable++
		}
	}
	for i := n - 1; i >= 0 && start+i >= start+partition; i-- {
		p := replicas[i]
		if p == nil || p.DeletionTimestamp != nil || revisionOf(p) == history.HashOf(updateRev) {
			continue
		}
		if unavailable >= maxUnavailable {
			break
		}
		if c.healthy(set, p) {
			unavailable++
		}
		if err := c.deletePod(ctx, set, p); err != nil {
			return err
		}
	}
	return nil
}

// partitioned reports whether ordinal stays on the current revision.
func partitioned(set *appsv1.StatefulSet, ordinal int) bool {
	s := set.Spec.UpdateStrategy
	if s.Type == appsv1.OnDeleteStatefulSetStrategyType || s.RollingUpdate == nil || s.RollingUpdate.Partition == nil {
		return false
	}
	return ordinal < startOrdinal(set)+int(*s.RollingUpdate.Partition)
}

// newPod builds the pod of ordinal from template.
func newPod(set *appsv1.StatefulSet, template *v1.PodTemplateSpec, revisionHash string, ordinal int) *v1.Pod {
	pod := controller.PodFromTemplate(template, set, controller.NewControllerRef(set, setKind))
	pod.GenerateName = ""
	pod.Name = podName(set, ordinal)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[appsv1.StatefulSetPodNameLabel] = pod.Name
	pod.Labels[appsv1.PodIndexLabel] = strconv.Itoa(ordinal)
	pod.Labels[appsv1.ControllerRevisionHashLabelKey] = revisionHash
	pod.Spec.Hostname = pod.Name
	pod.Spec.Subdomain = set.Spec.ServiceName
	for _, t := range set.Spec.VolumeClaimTemplates {
		vol := v1.Volume{Name: t.Name, VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{
			ClaimName: claimName(set, t.Name, ordinal)}}}
		replaced := false
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == t.Name {
				pod.Spec.Volumes[i] = vol
				replaced = true
			}
		}
		if !replaced {
			pod.Spec.Volumes = append(pod.Spec.Volumes, vol)
		}
	}
	return pod
}

func (c *Controller) createPod(ctx context.Context, set *appsv1.StatefulSet, template *v1.PodTemplateSpec, revisionHash string, ordinal int) error {
	pod := newPod(set, template, revisionHash, ordinal)
	if err := c.ensureClaims(ctx, set, pod, ordinal, false); err != nil {
		return err
	}
	_, err := c.client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		c.recorder.Eventf(set, v1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return fmt.Errorf("creating pod %s/%s: %w", set.Namespace, pod.Name, err)
	}
	c.recorder.Eventf(set, v1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	return nil
}

func (c *Controller) deletePod(ctx context.Context, set *appsv1.StatefulSet, p *v1.Pod) error {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		c.recorder.Eventf(set, v1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", p.Name, set.Name, err)
		return fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.recorder.Eventf(set, v1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", p.Name, set.Name)
	return nil
}

// ensureClaims creates the missing PVCs of ordinal and sets the owner
// references the retention policy asks for; condemned means the ordinal is
// being scaled away. A pod without a UID (not created yet) gets no
// pod-owned claims.
func (c *Controller) ensureClaims(ctx context.Context, set *appsv1.StatefulSet, pod *v1.Pod, ordinal int, condemned bool) error {
	policy := set.Spec.PersistentVolumeClaimRetentionPolicy
	wantSet := policy != nil && policy.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	wantPod := policy != nil && policy.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType && condemned && pod.UID != ""
	var errs []error
	for _, t := range set.Spec.VolumeClaimTemplates {
		name := claimName(set, t.Name, ordinal)
		claim, err := c.pvcLister.PersistentVolumeClaims(set.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			claim = &v1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace, Labels: map[string]string{}, Annotations: t.Annotations},
				Spec:       t.Spec,
			}
			for k, v := range t.Labels {
				claim.Labels[k] = v
			}
			for k, v := range set.Spec.Selector.MatchLabels {
				claim.Labels[k] = v
			}
			claim.OwnerReferences = claimOwners(nil, set, pod, wantSet, wantPod)
			_, err := c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				c.recorder.Eventf(set, v1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %v", name, pod.Name, set.Name, err)
				errs = append(errs, fmt.Errorf("creating claim %s/%s: %w", set.Namespace, name, err))
			} else if err == nil {
				c.recorder.Eventf(set, v1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", name, pod.Name, set.Name)
			}
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("getting claim %s/%s: %w", set.Namespace, name, err))
			continue
		}
		owners := claimOwners(claim.OwnerReferences, set, pod, wantSet, wantPod)
		if equality.Semantic.DeepEqual(owners, claim.OwnerReferences) || claim.DeletionTimestamp != nil {
			continue
		}
		cl := claim.DeepCopy()
		cl.OwnerReferences = owners
		if _, err := c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Update(ctx, cl, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("updating owners of claim %s/%s: %w", set.Namespace, name, err))
		}
	}
	return errors.Join(errs...)
}

// claimOwners returns refs with the set's and the pod's references set as
// wanted, other owners untouched.
func claimOwners(refs []metav1.OwnerReference, set *appsv1.StatefulSet, pod *v1.Pod, wantSet, wantPod bool) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range refs {
		if r.UID == set.UID || (r.Kind == "Pod" && r.Name == pod.Name) {
			continue
		}
		out = append(out, r)
	}
	if wantSet {
		out = append(out, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: set.Name, UID: set.UID})
	}
	if wantPod {
		out = append(out, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID})
	}
	if len(out) == 0 && refs == nil {
		return nil
	}
	if len(out) == 0 {
		return []metav1.OwnerReference{}
	}
	return out
}

func (c *Controller) updateStatus(ctx context.Context, set *appsv1.StatefulSet, pods []*v1.Pod, currentRev, updateRev *appsv1.ControllerRevision, collisions int32) error {
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    currentRev.Name,
		UpdateRevision:     updateRev.Name,
		CollisionCount:     &collisions,
		Conditions:         set.Status.Conditions,
	}
	now := c.clock.Now()
	for _, p := range pods {
		if p.DeletionTimestamp != nil && isTerminal(p) {
			continue
		}
		st.Replicas++
		if p.Status.Phase == v1.PodRunning && controller.IsPodReady(p) {
			st.ReadyReplicas++
			if controller.IsPodAvailable(p, set.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			} else {
				c.requeueForAvailability(set, p)
			}
		}
		switch revisionOf(p) {
		case history.HashOf(currentRev):
			st.CurrentReplicas++
		}
		if revisionOf(p) == history.HashOf(updateRev) {
			st.UpdatedReplicas++
		}
	}
	// A finished rolling update makes the update revision current.
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType &&
		st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas && int(st.Replicas) == replicasOf(set) {
		st.CurrentRevision = st.UpdateRevision
		st.CurrentReplicas = st.UpdatedReplicas
	}
	if equality.Semantic.DeepEqual(set.Status, st) {
		return nil
	}
	s := set.DeepCopy()
	s.Status = st
	if _, err := c.client.AppsV1().StatefulSets(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status of statefulset %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}
