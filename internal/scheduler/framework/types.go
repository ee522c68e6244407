package framework

import (
	"fmt"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// AffinityTerm is a compiled v1.PodAffinityTerm.
type AffinityTerm struct {
	Namespaces sets.Set[string]
	// NamespaceSelector is nil when the term has none; labels.Everything()
	// for an empty selector ({}: all namespaces).
	NamespaceSelector labels.Selector
	Selector          labels.Selector
	TopologyKey       string
	// key renders the term canonically (see Key).
	key string
}

// Key renders the term canonically: terms with equal keys select the same
// pods in the same domains. Index groups existing pods' terms by it.
func (t *AffinityTerm) Key() string {
	if t.key == "" {
		nsSel := "-"
		if t.NamespaceSelector != nil {
			nsSel = SelectorKey(t.NamespaceSelector)
		}
		t.key = NamespacesKey(t.Namespaces) + "|" + nsSel + "|" + SelectorKey(t.Selector) + "|" + t.TopologyKey
	}
	return t.key
}

// WithNamespaces returns a copy of t selecting exactly the namespaces ns
// (no namespace selector), e.g. after resolving its selector.
func (t AffinityTerm) WithNamespaces(ns sets.Set[string]) AffinityTerm {
	t.Namespaces, t.NamespaceSelector, t.key = ns, nil, ""
	t.Key()
	return t
}

// Matches reports whether pod (whose namespace has nsLabels) is selected by
// the term. nsLabels is only consulted when the term has a
// NamespaceSelector.
func (t *AffinityTerm) Matches(pod *v1.Pod, nsLabels labels.Set) bool {
	if !t.Namespaces.Has(pod.Namespace) {
		if t.NamespaceSelector == nil || !t.NamespaceSelector.Matches(nsLabels) {
			return false
		}
	}
	return t.Selector.Matches(labels.Set(pod.Labels))
}

// WeightedAffinityTerm is a preferred term with its weight.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

func newAffinityTerm(pod *v1.Pod, term *v1.PodAffinityTerm) (*AffinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("parsing label selector: %w", err)
	}
	// matchLabelKeys/mismatchLabelKeys are merged into the selector from the
	// pod's own labels, like upstream's admission does.
	for _, k := range term.MatchLabelKeys {
		if v, ok := pod.Labels[k]; ok {
			r, err := labels.NewRequirement(k, "in", []string{v})
			if err == nil {
				sel = sel.Add(*r)
			}
		}
	}
	for _, k := range term.MismatchLabelKeys {
		if v, ok := pod.Labels[k]; ok {
			r, err := labels.NewRequirement(k, "notin", []string{v})
			if err == nil {
				sel = sel.Add(*r)
			}
		}
	}
	t := &AffinityTerm{Namespaces: sets.New(term.Namespaces...), Selector: sel, TopologyKey: term.TopologyKey}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		t.Namespaces.Insert(pod.Namespace)
	}
	if term.NamespaceSelector != nil {
		ns, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("parsing namespace selector: %w", err)
		}
		t.NamespaceSelector = ns
	}
	t.Key()
	return t, nil
}

// PodInfo is a pod with everything the plugins need precomputed once, when
// the pod enters the queue or the cache, instead of once per node.
type PodInfo struct {
	Pod *v1.Pod
	// Requests is what the pod occupies on a node (see PodRequests).
	Requests Resource
	// NonZeroCPU/NonZeroMem are Requests with scoring defaults.
	NonZeroCPU, NonZeroMem int64

	RequiredAffinityTerms      []AffinityTerm
	RequiredAntiAffinityTerms  []AffinityTerm
	PreferredAffinityTerms     []WeightedAffinityTerm
	PreferredAntiAffinityTerms []WeightedAffinityTerm
	// ParseError is set when a term could not be compiled; plugins then
	// reject the pod as unresolvable.
	ParseError error

	// ident is the identity the snapshot's Index keys the pod by: new for
	// every PodInfo built (NewPodInfo, Update, WithNewIdentity), carried
	// over only by NodeInfo.ReplacePodInfo to the in-place replacement of
	// the same pod on the same node. Two PodInfos held by the cache at
	// once never share one otherwise.
	ident *podIdent
}

// podIdent is a PodInfo identity (non-zero size: distinct allocations
// have distinct addresses).
type podIdent struct{ _ byte }

// WithNewIdentity returns a copy of pi with an identity of its own (a
// copy of a PodInfo otherwise shares its identity, as an in-place
// replacement does): for a PodInfo that may be indexed while its source
// is, or later is again (the assumed copy of a queued pod).
func (pi *PodInfo) WithNewIdentity() *PodInfo {
	c := *pi
	c.ident = &podIdent{}
	return &c
}

// NewPodInfo precomputes a PodInfo.
func NewPodInfo(pod *v1.Pod) *PodInfo {
	pi := &PodInfo{}
	pi.Update(pod)
	return pi
}

// Update recomputes the PodInfo for a new version of the pod.
func (pi *PodInfo) Update(pod *v1.Pod) {
	*pi = PodInfo{Pod: pod, Requests: PodRequests(pod), ident: &podIdent{}}
	pi.NonZeroCPU, pi.NonZeroMem = NonZeroRequests(pod, &pi.Requests)
	aff := pod.Spec.Affinity
	if aff == nil {
		return
	}
	compile := func(terms []v1.PodAffinityTerm) []AffinityTerm {
		out := make([]AffinityTerm, 0, len(terms))
		for i := range terms {
			t, err := newAffinityTerm(pod, &terms[i])
			if err != nil {
				pi.ParseError = err
				continue
			}
			out = append(out, *t)
		}
		return out
	}
	compileW := func(terms []v1.WeightedPodAffinityTerm) []WeightedAffinityTerm {
		out := make([]WeightedAffinityTerm, 0, len(terms))
		for i := range terms {
			if terms[i].Weight == 0 {
				continue
			}
			t, err := newAffinityTerm(pod, &terms[i].PodAffinityTerm)
			if err != nil {
				pi.ParseError = err
				continue
			}
			out = append(out, WeightedAffinityTerm{AffinityTerm: *t, Weight: terms[i].Weight})
		}
		return out
	}
	if a := aff.PodAffinity; a != nil {
		pi.RequiredAffinityTerms = compile(a.RequiredDuringSchedulingIgnoredDuringExecution)
		pi.PreferredAffinityTerms = compileW(a.PreferredDuringSchedulingIgnoredDuringExecution)
	}
	if a := aff.PodAntiAffinity; a != nil {
		pi.RequiredAntiAffinityTerms = compile(a.RequiredDuringSchedulingIgnoredDuringExecution)
		pi.PreferredAntiAffinityTerms = compileW(a.PreferredDuringSchedulingIgnoredDuringExecution)
	}
}

// Equivalent reports whether a NodeInfo and an Index account pi and o
// alike, so one may replace the other in place (NodeInfo.ReplacePodInfo):
// the same pod (UID, namespace, node), equal labels, the same deletion
// timestamp, equal requests (and scoring requests) and host ports, and
// no pod (anti-)affinity terms or parse error on either (terms are
// indexed per PodInfo; such pods take the remove-and-add path).
func (pi *PodInfo) Equivalent(o *PodInfo) bool {
	a, b := pi.Pod, o.Pod
	if a.UID != b.UID || a.Namespace != b.Namespace || a.Spec.NodeName != b.Spec.NodeName ||
		pi.HasAffinity() || o.HasAffinity() || pi.ParseError != nil || o.ParseError != nil ||
		!indexEquivalent(a, b) || pi.NonZeroCPU != o.NonZeroCPU || pi.NonZeroMem != o.NonZeroMem ||
		!pi.Requests.equal(&o.Requests) {
		return false
	}
	return slices.Equal(HostPorts(a), HostPorts(b))
}

// indexEquivalent reports whether the Index's label sets and counters
// see a and b alike: same namespace, equal labels (nil equals empty, as
// selectors see them) and the same deletion timestamp. Counter predicates
// read only these (see DomainCounts).
func indexEquivalent(a, b *v1.Pod) bool {
	if a.Namespace != b.Namespace || !maps.Equal(a.Labels, b.Labels) {
		return false
	}
	da, db := a.DeletionTimestamp, b.DeletionTimestamp
	return (da == nil) == (db == nil) && (da == nil || da.Equal(db))
}

// HasAffinity reports whether the pod has any pod (anti-)affinity term.
func (pi *PodInfo) HasAffinity() bool {
	return len(pi.RequiredAffinityTerms)+len(pi.RequiredAntiAffinityTerms)+
		len(pi.PreferredAffinityTerms)+len(pi.PreferredAntiAffinityTerms) > 0
}

// HostPort is one (ip, protocol, port) a pod binds on its node.
type HostPort struct {
	IP       string
	Protocol v1.Protocol
	Port     int32
}

// HostPorts lists the host ports a pod wants.
func HostPorts(pod *v1.Pod) []HostPort {
	var out []HostPort
	add := func(cs []v1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				ip := p.HostIP
				if ip == "" {
					ip = "0.0.0.0"
				}
				proto := p.Protocol
				if proto == "" {
					proto = v1.ProtocolTCP
				}
				out = append(out, HostPort{IP: ip, Protocol: proto, Port: p.HostPort})
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out
}
