package servicealloc

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// txn is one Admit call: what it allocated afresh is undone if a later
// step of the same call fails.
type txn struct {
	a     *Allocator
	svc   *corev1.Service
	o     owner
	now   time.Time
	fresh []fresh
}

type fresh struct {
	p   *pool
	off int
}

func (t *txn) rollback() {
	for _, f := range t.fresh {
		f.p.free(f.off)
		t.a.touch(f.p, f.off)
	}
}

// claim reserves off for this service. It fails only when another service
// holds it; what this service already holds (from an earlier attempt of
// the same update, or a failed create) is taken over.
func (t *txn) claim(p *pool, off int) bool {
	if cur, ok := p.ownerOf(off); ok {
		if cur.key != t.o.key {
			return false
		}
	} else {
		t.fresh = append(t.fresh, fresh{p, off})
	}
	p.set(off, t.o, pendingAlloc, t.now)
	t.a.touch(p, off)
	return true
}

// next reserves any free entry, preferring what this service already holds
// and does not use (avoid), then [lo, hi), then the rest of the range.
func (t *txn) next(p *pool, lo, hi int, avoid func(int) bool) (int, bool) {
	for _, off := range p.owned(t.o.key) {
		if !avoid(off) {
			t.claim(p, off)
			return off, true
		}
	}
	off, ok := p.bm.AllocateNextIn(lo, hi, t.a.cfg.Rand(max(hi-lo, 1)))
	if !ok {
		off, ok = p.bm.AllocateNextIn(0, lo, t.a.cfg.Rand(max(lo, 1)))
	}
	if !ok {
		return 0, false
	}
	t.fresh = append(t.fresh, fresh{p, off})
	p.set(off, t.o, pendingAlloc, t.now)
	t.a.touch(p, off)
	return off, true
}

func hasIP(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

// admitIP gives the service its ClusterIP: none for ExternalName and
// headless services, the requested one if free, else the next free one.
func (t *txn) admitIP(old *corev1.Service) error {
	s := &t.svc.Spec
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName && s.Type == corev1.ServiceTypeExternalName &&
		(s.ClusterIP == "" || s.ClusterIP == old.Spec.ClusterIP) {
		// Turning into ExternalName drops what the old type was given
		// unless the client changed it (which validation then refuses).
		s.ClusterIP, s.ClusterIPs, s.IPFamilies, s.IPFamilyPolicy = "", nil, nil, nil
	}
	if s.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if s.ClusterIP == "" && len(s.ClusterIPs) > 0 {
		s.ClusterIP = s.ClusterIPs[0]
	}
	if s.ClusterIP == corev1.ClusterIPNone {
		s.ClusterIPs = []string{corev1.ClusterIPNone}
		return nil
	}
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.ClusterIP != "" {
		// clusterIP is immutable: an unchanged one needs nothing, a
		// changed one is validation's to refuse.
		if s.ClusterIP == old.Spec.ClusterIP && len(s.ClusterIPs) == 0 {
			s.ClusterIPs = old.Spec.ClusterIPs
		}
		return nil
	}
	path := field.NewPath("spec", "clusterIPs")
	if s.ClusterIP != "" {
		ip, err := netip.ParseAddr(s.ClusterIP)
		if err != nil {
			return nil // validation reports a malformed IP
		}
		if len(s.ClusterIPs) == 0 {
			s.ClusterIPs = []string{s.ClusterIP}
		}
		off, ok := t.a.ips.Offset(ip)
		if !ok {
			return invalid(t.svc, path, s.ClusterIPs, fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, ip, t.a.ips))
		}
		if !t.claim(t.a.ip, off) {
			return invalid(t.svc, path, s.ClusterIPs, fmt.Sprintf("failed to allocate IP %s: %v", ip, errIPAllocated))
		}
		return nil
	}
	band := t.a.ips.staticBand()
	off, ok := t.next(t.a.ip, band, t.a.ips.Size(), func(int) bool { return false })
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %w", errFull))
	}
	ip := t.a.ips.Addr(off).String()
	s.ClusterIP, s.ClusterIPs = ip, []string{ip}
	return nil
}

func hasNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// allocatesNodePorts: NodePort services, and LoadBalancers unless
// allocateLoadBalancerNodePorts is false (then only requested ports).
func allocatesNodePorts(s *corev1.Service) bool {
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		return s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts
	}
	return s.Spec.Type == corev1.ServiceTypeNodePort
}

func needsHealthCheck(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

func nodePortSet(s *corev1.Service) map[int32]bool {
	out := map[int32]bool{}
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			out[p.NodePort] = true
		}
	}
	return out
}

// carryOver applies upstream's update rules before allocating: node ports
// the client left out are kept by port name, and values the old type had
// are dropped when the new type has no use for them.
func (t *txn) carryOver(old *corev1.Service) {
	s := &t.svc.Spec
	oldPorts := nodePortSet(old)
	switch {
	case hasNodePorts(old) && hasNodePorts(t.svc):
		inUse := nodePortSet(t.svc)
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range s.Ports {
			p := &s.Ports[i]
			if v := byName[p.Name]; p.NodePort == 0 && v != 0 && !inUse[v] {
				p.NodePort = v
				inUse[v] = true
			}
		}
	case !hasNodePorts(t.svc):
		for i := range s.Ports {
			if oldPorts[s.Ports[i].NodePort] {
				s.Ports[i].NodePort = 0
			}
		}
	}
	switch {
	case needsHealthCheck(old) && needsHealthCheck(t.svc) && s.HealthCheckNodePort == 0:
		s.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	case !needsHealthCheck(t.svc) && s.HealthCheckNodePort == old.Spec.HealthCheckNodePort:
		s.HealthCheckNodePort = 0
	}
}

// admitNodePorts reserves requested node ports and allocates the missing
// ones. Ports with the same port number (TCP and UDP of one port) share a
// node port, as upstream does.
func (t *txn) admitNodePorts(old *corev1.Service) error {
	s := &t.svc.Spec
	held := map[int32]bool{} // what the stored service already holds
	if old != nil {
		t.carryOver(old)
		held = nodePortSet(old)
		if old.Spec.HealthCheckNodePort != 0 {
			held[old.Spec.HealthCheckNodePort] = true
		}
	}
	hcPath := field.NewPath("spec", "healthCheckNodePort")
	if s.HealthCheckNodePort != 0 && !needsHealthCheck(t.svc) {
		return invalid(t.svc, hcPath, s.HealthCheckNodePort, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
	}
	if !hasNodePorts(t.svc) {
		return nil // validation refuses node ports on other types
	}
	reserve := func(np int32) error {
		if held[np] {
			return nil
		}
		if !t.a.ports.Contains(int(np)) {
			return fmt.Errorf("provided port is not in the valid range. The range of valid ports is %s", t.a.ports)
		}
		if !t.claim(t.a.np, int(np)-t.a.ports.Base) {
			return errPortAllocated
		}
		return nil
	}
	taken := map[int32]int32{} // node port -> service port using it (0: health check)
	forPort := map[int32]int32{}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort == 0 {
			continue
		}
		path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		if user, ok := taken[p.NodePort]; ok {
			if user == p.Port {
				continue
			}
			return invalid(t.svc, path, p.NodePort, errPortAllocated.Error())
		}
		if err := reserve(p.NodePort); err != nil {
			return invalid(t.svc, path, p.NodePort, err.Error())
		}
		taken[p.NodePort] = p.Port
		if forPort[p.Port] == 0 {
			forPort[p.Port] = p.NodePort
		}
	}
	if hc := s.HealthCheckNodePort; hc != 0 {
		if _, ok := taken[hc]; ok {
			return invalid(t.svc, hcPath, hc, fmt.Sprintf("failed to allocate requested HealthCheck NodePort %d: %v", hc, errPortAllocated))
		}
		if err := reserve(hc); err != nil {
			return invalid(t.svc, hcPath, hc, fmt.Sprintf("failed to allocate requested HealthCheck NodePort %d: %v", hc, err))
		}
		taken[hc] = 0
	}
	avoid := func(off int) bool {
		_, ok := taken[int32(off+t.a.ports.Base)]
		return ok
	}
	allocate := func() (int32, error) {
		off, ok := t.next(t.a.np, 0, t.a.ports.Size, avoid)
		if !ok {
			return 0, apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %w", errFull))
		}
		return int32(off + t.a.ports.Base), nil
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		if np := forPort[p.Port]; np != 0 {
			p.NodePort = np
			continue
		}
		if !allocatesNodePorts(t.svc) {
			continue
		}
		np, err := allocate()
		if err != nil {
			return err
		}
		p.NodePort, taken[np], forPort[p.Port] = np, p.Port, np
	}
	if needsHealthCheck(t.svc) && s.HealthCheckNodePort == 0 {
		np, err := allocate()
		if err != nil {
			return err
		}
		s.HealthCheckNodePort, taken[np] = np, 0
	}
	return nil
}

// markDropped marks what old held and svc no longer does as pending
// release: the update may yet fail, so repair frees it once the store
// agrees.
func (t *txn) markDropped(old *corev1.Service) {
	drop := func(p *pool, before, after []int) {
		for _, off := range before {
			if slices.Contains(after, off) {
				continue
			}
			if s := p.slots[off]; s != nil && s.owner.key == t.o.key {
				s.state, s.since = pendingRelease, t.now
				t.a.touch(p, off)
			}
		}
	}
	drop(t.a.ip, t.a.ipOffsets(old), t.a.ipOffsets(t.svc))
	drop(t.a.np, t.a.portOffsets(old), t.a.portOffsets(t.svc))
}
