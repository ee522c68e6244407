package endpointslice

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/controller/endpoints"
)

// Plan is what one reconcile wants written; it is computed without I/O.
type Plan struct {
	Create []*discoveryv1.EndpointSlice
	Update []*discoveryv1.EndpointSlice
	Delete []*discoveryv1.EndpointSlice
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Create)+len(p.Update)+len(p.Delete) == 0 }

// desiredGroup is the set of endpoints sharing one resolved port list.
type desiredGroup struct {
	ports     []discoveryv1.EndpointPort
	endpoints map[string]discoveryv1.Endpoint // by endpointKey
}

// desiredEndpoints groups the IPv4 endpoints of the pods backing svc by port list.
func desiredEndpoints(svc *corev1.Service, pods []*corev1.Pod) map[string]*desiredGroup {
	groups := map[string]*desiredGroup{}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	for _, pod := range pods {
		// Terminating pods stay in slices with terminating=true, so consumers
		// can drain connections.
		if !endpoints.ShouldPodBeInEndpoints(pod, true) {
			continue
		}
		ip := ipv4Of(pod)
		if ip == "" {
			continue
		}
		var ports []discoveryv1.EndpointPort
		if len(svc.Spec.Ports) == 0 && !headless {
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			n, err := endpoints.FindPort(pod, sp)
			if err != nil {
				continue
			}
			proto := sp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: new(sp.Name), Port: new(n), Protocol: new(proto), AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		slices.SortFunc(ports, comparePorts)
		podReady := endpoints.IsPodReady(pod)
		terminating := pod.DeletionTimestamp != nil
		ep := discoveryv1.Endpoint{
			Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       new(svc.Spec.PublishNotReadyAddresses || (podReady && !terminating)),
				Serving:     new(svc.Spec.PublishNotReadyAddresses || podReady),
				Terminating: new(terminating),
			},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		if pod.Spec.NodeName != "" {
			ep.NodeName = new(pod.Spec.NodeName)
		}
		if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
			ep.Hostname = new(pod.Spec.Hostname)
		}
		key := portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &desiredGroup{ports: ports, endpoints: map[string]discoveryv1.Endpoint{}}
			groups[key] = g
		}
		g.endpoints[endpointKey(ep)] = ep
	}
	return groups
}

func ipv4Of(pod *corev1.Pod) string {
	cands := []string{pod.Status.PodIP}
	for _, ip := range pod.Status.PodIPs {
		cands = append(cands, ip.IP)
	}
	for _, ip := range cands {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			return ip
		}
	}
	return ""
}

// reconcile compares existing slices (all managed by us for svc) with the
// desired endpoints and returns the writes that converge them while moving as
// few endpoints as possible: endpoints stay in the slice that holds them,
// new endpoints fill free room in slices already being written before
// untouched ones, and only then go into new slices.
func reconcile(svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice, maxPerSlice int, newName func() string) Plan {
	groups := desiredEndpoints(svc, pods)
	wantLabels := sliceLabels(svc)
	owner := ownerRef(svc)

	var plan Plan
	placed := map[string]bool{} // portsKey + endpointKey
	type slot struct {
		slice   *discoveryv1.EndpointSlice
		changed bool
	}
	byGroup := map[string][]*slot{}

	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	var kept []*slot
	for _, es := range existing {
		ports := slices.Clone(es.Ports)
		slices.SortFunc(ports, comparePorts)
		key := portsKey(ports)
		g := groups[key]
		if g == nil || es.AddressType != discoveryv1.AddressTypeIPv4 {
			plan.Delete = append(plan.Delete, es)
			continue
		}
		s := &slot{slice: es.DeepCopy()}
		var eps []discoveryv1.Endpoint
		for _, ep := range es.Endpoints {
			ek := endpointKey(ep)
			want, ok := g.endpoints[ek]
			if !ok || placed[key+ek] {
				s.changed = true
				continue
			}
			placed[key+ek] = true
			if !equality.Semantic.DeepEqual(ep, want) {
				s.changed = true
			}
			eps = append(eps, want)
		}
		s.slice.Endpoints = eps
		if len(eps) == 0 {
			plan.Delete = append(plan.Delete, es)
			continue
		}
		byGroup[key] = append(byGroup[key], s)
		kept = append(kept, s)
	}

	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		var pending []discoveryv1.Endpoint
		for _, ek := range slices.Sorted(maps.Keys(g.endpoints)) {
			if !placed[key+ek] {
				pending = append(pending, g.endpoints[ek])
			}
		}
		// Fill slices we are writing anyway first, then untouched ones.
		slots := byGroup[key]
		slices.SortStableFunc(slots, func(a, b *slot) int {
			if a.changed == b.changed {
				return 0
			}
			if a.changed {
				return -1
			}
			return 1
		})
		for _, s := range slots {
			for len(pending) > 0 && len(s.slice.Endpoints) < maxPerSlice {
				s.slice.Endpoints = append(s.slice.Endpoints, pending[0])
				pending = pending[1:]
				s.changed = true
			}
		}
		for len(pending) > 0 {
			n := min(len(pending), maxPerSlice)
			es := newSlice(svc, newName(), wantLabels, owner, g.ports, pending[:n])
			plan.Create = append(plan.Create, es)
			pending = pending[n:]
		}
	}

	for _, s := range kept {
		es := s.slice
		if !maps.Equal(es.Labels, wantLabels) {
			es.Labels = wantLabels
			s.changed = true
		}
		if !hasOwner(es, owner) {
			es.OwnerReferences = append(es.OwnerReferences, owner)
			s.changed = true
		}
		if s.changed {
			sortEndpoints(es.Endpoints)
			plan.Update = append(plan.Update, es)
		}
	}

	// A service with no endpoints keeps one empty placeholder slice, so
	// consumers can tell "no endpoints" from "not yet reconciled".
	if len(groups) == 0 {
		var placeholder *discoveryv1.EndpointSlice
		var rest []*discoveryv1.EndpointSlice
		for _, es := range plan.Delete {
			if placeholder == nil && len(es.Endpoints) == 0 && len(es.Ports) == 0 && es.AddressType == discoveryv1.AddressTypeIPv4 {
				placeholder = es
				continue
			}
			rest = append(rest, es)
		}
		plan.Delete = rest
		if placeholder == nil {
			plan.Create = append(plan.Create, newSlice(svc, newName(), wantLabels, owner, nil, nil))
		} else if !maps.Equal(placeholder.Labels, wantLabels) || !hasOwner(placeholder, owner) {
			u := placeholder.DeepCopy()
			u.Labels = wantLabels
			if !hasOwner(u, owner) {
				u.OwnerReferences = append(u.OwnerReferences, owner)
			}
			plan.Update = append(plan.Update, u)
		}
	}
	return plan
}

func newSlice(svc *corev1.Service, name string, lbls map[string]string, owner metav1.OwnerReference, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	eps = slices.Clone(eps)
	sortEndpoints(eps)
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       svc.Namespace,
			Labels:          maps.Clone(lbls),
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       slices.Clone(ports),
	}
}

func sliceLabels(svc *corev1.Service) map[string]string {
	out := map[string]string{}
	for k, v := range svc.Labels {
		if k == discoveryv1.LabelServiceName || k == discoveryv1.LabelManagedBy || k == corev1.IsHeadlessService {
			continue // reserved: ours to set
		}
		out[k] = v
	}
	out[discoveryv1.LabelServiceName] = svc.Name
	out[discoveryv1.LabelManagedBy] = ControllerName
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	}
	return out
}

func ownerRef(svc *corev1.Service) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
		Controller: new(true), BlockOwnerDeletion: new(true),
	}
}

func hasOwner(es *discoveryv1.EndpointSlice, owner metav1.OwnerReference) bool {
	for _, r := range es.OwnerReferences {
		if r.UID == owner.UID {
			return true
		}
	}
	return false
}

func endpointKey(ep discoveryv1.Endpoint) string {
	if ep.TargetRef != nil && ep.TargetRef.UID != "" {
		return string(ep.TargetRef.UID)
	}
	return strings.Join(ep.Addresses, ",")
}

func sortEndpoints(eps []discoveryv1.Endpoint) {
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return cmp.Compare(endpointKey(a), endpointKey(b)) })
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func comparePorts(a, b discoveryv1.EndpointPort) int {
	return cmp.Or(cmp.Compare(deref(a.Name), deref(b.Name)), cmp.Compare(deref(a.Port), deref(b.Port)), cmp.Compare(deref(a.Protocol), deref(b.Protocol)))
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var sb strings.Builder
	for _, p := range ports {
		sb.WriteString(deref(p.Name) + "/" + strconv.Itoa(int(deref(p.Port))) + "/" + string(deref(p.Protocol)) + "/" + deref(p.AppProtocol) + ";")
	}
	return sb.String()
}
