package volumebinding

import (
	"sort"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/controller/volume"
)

// noProvisioner is the provisioner name of classes for static volumes only.
const noProvisioner = "kubernetes.io/no-provisioner"

// candidate is a volume an unbound claim could take, with its node
// affinity compiled once per cycle (nil: any node).
type candidate struct {
	pv       *v1.PersistentVolume
	sel      *nodeaffinity.NodeSelector
	preBound bool // spec.claimRef already names this claim
}

func (c candidate) fits(node *v1.Node) bool { return c.sel == nil || c.sel.Match(node) }

// claimToBind is an unbound claim of a WaitForFirstConsumer class.
type claimToBind struct {
	pvc   *v1.PersistentVolumeClaim
	class *storagev1.StorageClass
	// selectedNode is set when the claim already waits for provisioning
	// on a node (annotation, or assumed by an earlier pod this run).
	selectedNode string
	// candidates: pre-bound volumes first, then the rest smallest first.
	candidates []candidate
}

// key is the claim's namespace/name.
func (c *claimToBind) key() string { return c.pvc.Namespace + "/" + c.pvc.Name }

// binding pre-binds a volume to a claim.
type binding struct {
	pv  *v1.PersistentVolume
	pvc *v1.PersistentVolumeClaim
}

// podVolumes is what a pod's unbound claims need on one node.
type podVolumes struct {
	bindings   []binding
	provisions []*v1.PersistentVolumeClaim // claims to provision on the node
	selected   []*v1.PersistentVolumeClaim // already provisioning there
}

// buildCandidates lists, for claim pvc, the volumes it could bind to
// ignoring nodes: volumes pre-bound to it, and free volumes (no claimRef,
// not assumed for another claim) that match class, access modes,
// capacity, volume mode and selector. taken reports the claim a volume is
// assumed for ("" when none).
func buildCandidates(pvc *v1.PersistentVolumeClaim, pvs []*v1.PersistentVolume, taken func(pv string) string) []candidate {
	key := pvc.Namespace + "/" + pvc.Name
	var pre, free []candidate
	for _, pv := range pvs {
		var preBound bool
		if ref := pv.Spec.ClaimRef; ref != nil {
			if ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || (ref.UID != "" && ref.UID != pvc.UID) {
				continue
			}
			if pv.DeletionTimestamp != nil || pv.Status.Phase == v1.VolumeReleased || pv.Status.Phase == v1.VolumeFailed {
				continue
			}
			preBound = true
		} else {
			if by := taken(pv.Name); by != "" && by != key {
				continue
			}
			if !volume.Matches(pvc, pv, nil) {
				continue
			}
		}
		c := candidate{pv: pv, preBound: preBound}
		if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
			sel, err := nodeaffinity.NewNodeSelector(na.Required)
			if err != nil {
				continue // a volume no node can satisfy
			}
			c.sel = sel
		}
		if preBound {
			pre = append(pre, c)
		} else {
			free = append(free, c)
		}
	}
	sort.SliceStable(free, func(i, j int) bool {
		ci, cj := free[i].pv.Spec.Capacity.Storage(), free[j].pv.Spec.Capacity.Storage()
		if d := ci.Cmp(*cj); d != 0 {
			return d < 0
		}
		return free[i].pv.Name < free[j].pv.Name
	})
	return append(pre, free...)
}

// canProvision reports whether class can provision a volume on node:
// it names a provisioner and its allowedTopologies admit the node.
func canProvision(class *storagev1.StorageClass, node *v1.Node) bool {
	if class == nil || class.Provisioner == "" || class.Provisioner == noProvisioner {
		return false
	}
	return matchTopology(class.AllowedTopologies, node.Labels)
}

// matchTopology: no terms admit every node; otherwise some term must have
// every label expression satisfied by the node's labels.
func matchTopology(terms []v1.TopologySelectorTerm, nodeLabels labels.Set) bool {
	if len(terms) == 0 {
		return true
	}
	for _, term := range terms {
		ok := true
		for _, e := range term.MatchLabelExpressions {
			v, has := nodeLabels[e.Key]
			if !has || !contains(e.Values, v) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// findPodVolumes decides, for one node, how every unbound claim would be
// satisfied: a matching volume with node affinity to the node (never the
// same volume twice), else provisioning when the class can provision
// there. It returns nil and false when some claim cannot be satisfied.
// claims are sorted smallest request first, so a small claim does not take
// the only volume big enough for a larger one.
func findPodVolumes(claims []*claimToBind, node *v1.Node) (*podVolumes, bool) {
	out := &podVolumes{}
	used := map[string]bool{}
	for _, c := range claims {
		if c.selectedNode != "" {
			if c.selectedNode != node.Name {
				return nil, false
			}
			out.selected = append(out.selected, c.pvc)
			continue
		}
		found := false
		for _, cand := range c.candidates {
			if used[cand.pv.Name] || !cand.fits(node) {
				continue
			}
			used[cand.pv.Name] = true
			out.bindings = append(out.bindings, binding{pv: cand.pv, pvc: c.pvc})
			found = true
			break
		}
		if found {
			continue
		}
		if !canProvision(c.class, node) {
			return nil, false
		}
		out.provisions = append(out.provisions, c.pvc)
	}
	return out, true
}

// sortClaims orders claims by requested storage, smallest first (name
// breaks ties, for determinism).
func sortClaims(claims []*claimToBind) {
	sort.SliceStable(claims, func(i, j int) bool {
		ri := claims[i].pvc.Spec.Resources.Requests[v1.ResourceStorage]
		rj := claims[j].pvc.Spec.Resources.Requests[v1.ResourceStorage]
		if d := ri.Cmp(rj); d != 0 {
			return d < 0
		}
		return claims[i].pvc.Name < claims[j].pvc.Name
	})
}
