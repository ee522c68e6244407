package volumebinding

import (
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"

	"skiff.dev/skiff/internal/controller/volume"
)

// assumedClaim is what a reserved pod decided for one of its claims: a
// volume to pre-bind, or a node to provision on.
type assumedClaim struct {
	pv   string
	node string
}

// assumeCache holds the volume decisions of pods that were reserved but
// whose writes the informers have not shown yet, so the next cycles do not
// give the same volume to another claim, and a second pod sharing a claim
// sees the first pod's choice. Entries go when the informer catches up
// (prune) or the pod is unreserved (revert).
type assumeCache struct {
	mu     sync.Mutex
	pvs    map[string]string       // volume name -> claim key it is assumed for
	claims map[string]assumedClaim // claim key -> decision
}

func newAssumeCache() *assumeCache {
	return &assumeCache{pvs: map[string]string{}, claims: map[string]assumedClaim{}}
}

// takenBy returns the claim a volume is assumed for, or "".
func (a *assumeCache) takenBy(pv string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pvs[pv]
}

// claim returns the decision assumed for a claim key.
func (a *assumeCache) claim(key string) (assumedClaim, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.claims[key]
	return c, ok
}

// assume records pv's decisions on node; it fails, changing nothing, when
// a volume is already assumed for another claim.
func (a *assumeCache) assume(pv *podVolumes, node string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range pv.bindings {
		key := b.pvc.Namespace + "/" + b.pvc.Name
		if by, ok := a.pvs[b.pv.Name]; ok && by != key {
			return fmt.Errorf("persistentvolume %q is already assumed for claim %s", b.pv.Name, by)
		}
	}
	for _, b := range pv.bindings {
		key := b.pvc.Namespace + "/" + b.pvc.Name
		a.pvs[b.pv.Name] = key
		a.claims[key] = assumedClaim{pv: b.pv.Name}
	}
	for _, c := range pv.provisions {
		a.claims[c.Namespace+"/"+c.Name] = assumedClaim{node: node}
	}
	return nil
}

// revert drops pv's decisions (only those still recorded as made by it).
func (a *assumeCache) revert(pv *podVolumes, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range pv.bindings {
		key := b.pvc.Namespace + "/" + b.pvc.Name
		if a.pvs[b.pv.Name] == key {
			delete(a.pvs, b.pv.Name)
		}
		if a.claims[key] == (assumedClaim{pv: b.pv.Name}) {
			delete(a.claims, key)
		}
	}
	for _, c := range pv.provisions {
		key := c.Namespace + "/" + c.Name
		if a.claims[key] == (assumedClaim{node: node}) {
			delete(a.claims, key)
		}
	}
}

// prune drops the entries the informers now show: a volume with a
// claimRef (or gone), a claim that is bound, has the selected node, or is
// gone. What remains are decisions still being written.
func (a *assumeCache) prune(pvs corelisters.PersistentVolumeLister, pvcs corelisters.PersistentVolumeClaimLister) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name := range a.pvs {
		pv, err := pvs.Get(name)
		if apierrors.IsNotFound(err) || (err == nil && pv.Spec.ClaimRef != nil) {
			delete(a.pvs, name)
		}
	}
	for key, d := range a.claims {
		ns, name := splitKey(key)
		pvc, err := pvcs.PersistentVolumeClaims(ns).Get(name)
		switch {
		case apierrors.IsNotFound(err):
			delete(a.claims, key)
		case err != nil:
		case pvc.Spec.VolumeName != "":
			delete(a.claims, key)
		case d.node != "" && pvc.Annotations[volume.AnnSelectedNode] == d.node:
			delete(a.claims, key)
		case d.pv != "":
			// Pre-bound: the claim stays unbound until the PV binder
			// runs, so keep the entry until the volume shows our claimRef.
			if pv, err := pvs.Get(d.pv); apierrors.IsNotFound(err) || (err == nil && boundTo(pv, pvc)) {
				delete(a.claims, key)
			}
		}
	}
}

// boundTo reports whether pv's claimRef names pvc.
func boundTo(pv *v1.PersistentVolume, pvc *v1.PersistentVolumeClaim) bool {
	ref := pv.Spec.ClaimRef
	return ref != nil && ref.Namespace == pvc.Namespace && ref.Name == pvc.Name && (ref.UID == "" || ref.UID == pvc.UID)
}

func splitKey(key string) (ns, name string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}
