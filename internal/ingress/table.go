package ingress

import (
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// DefaultControllerName is spec.controller of the IngressClasses this
// controller serves.
const DefaultControllerName = "skiff.dev/ingress"

// DefaultClassName is the IngressClass created at bootstrap.
const DefaultClassName = "skiff"

// Annotations read by the controller.
const (
	// IsDefaultClassAnnotation marks the cluster's default IngressClass.
	IsDefaultClassAnnotation = networkingv1.AnnotationIsDefaultIngressClass
	// ClassAnnotation is the deprecated way to pick a class.
	ClassAnnotation = "kubernetes.io/ingress.class"
)

// Source is what Build reads besides the Ingresses: listers in the
// controller, maps in tests.
type Source interface {
	Service(namespace, name string) *corev1.Service
	// EndpointSlices returns the slices labelled with the service's name.
	EndpointSlices(namespace, service string) []*discoveryv1.EndpointSlice
	Secret(namespace, name string) *corev1.Secret
}

// Backend is where a matched request goes.
type Backend struct {
	// Namespace/Service:Port name the Ingress backend (for logs).
	Namespace, Service, Port string
	// Endpoints are ready "host:port" addresses, sorted. Empty means 503.
	Endpoints []string
	// Reason says why Endpoints is empty.
	Reason string
}

func (b *Backend) String() string { return b.Namespace + "/" + b.Service + ":" + b.Port }

// routes are one host's paths.
type routes struct {
	exact  map[string]*Backend
	prefix map[string]*Backend // keys normalized by prefixKey
}

func (r *routes) match(path string) *Backend {
	if r == nil {
		return nil
	}
	// An Exact match is never shorter than a Prefix match of the same
	// request, so it wins whenever it matches.
	if b, ok := r.exact[path]; ok {
		return b
	}
	if len(r.prefix) == 0 {
		return nil
	}
	p := prefixKey(path)
	for {
		if b, ok := r.prefix[p]; ok {
			return b
		}
		if p == "/" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			p = "/"
		} else {
			p = p[:i]
		}
	}
}

// prefixKey drops a trailing slash so "/foo/" and "/foo" are one prefix.
func prefixKey(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}

// Table is an immutable routing snapshot. The zero value routes nothing.
type Table struct {
	exact    map[string]*routes // host → routes
	wildcard map[string]*routes // "foo.com" for "*.foo.com"
	anyHost  *routes
	def      *Backend

	certs         map[string]*tls.Certificate
	wildcardCerts map[string]*tls.Certificate
	fallbackCert  *tls.Certificate

	// Ingresses are the namespace/name keys of the Ingresses served.
	Ingresses []string
	// Problems lists what was skipped while building (bad secrets,
	// conflicting paths), for logs.
	Problems []string
}

// Match returns the backend for a request, or nil (404).
func (t *Table) Match(host, path string) *Backend {
	if t == nil {
		return nil
	}
	host = normalizeHost(host)
	if path == "" {
		path = "/"
	}
	if b := t.exact[host].match(path); b != nil {
		return b
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if b := t.wildcard[host[i+1:]].match(path); b != nil {
			return b
		}
	}
	if b := t.anyHost.match(path); b != nil {
		return b
	}
	return t.def
}

// Certificate returns the certificate for an SNI server name, or nil when
// none matches (the caller serves its default).
func (t *Table) Certificate(serverName string) *tls.Certificate {
	if t == nil {
		return nil
	}
	name := normalizeHost(serverName)
	if c := t.certs[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := t.wildcardCerts[name[i+1:]]; c != nil {
			return c
		}
	}
	return t.fallbackCert
}

// normalizeHost lower-cases and drops a port and a trailing dot.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// Classes are the IngressClasses of one controller.
type Classes struct {
	Names map[string]bool
	// Default is set when one of them is the cluster default.
	Default bool
}

// ClassesOf picks the classes whose spec.controller is controller.
func ClassesOf(controller string, classes []*networkingv1.IngressClass) Classes {
	c := Classes{Names: map[string]bool{}}
	for _, ic := range classes {
		if ic.Spec.Controller != controller {
			continue
		}
		c.Names[ic.Name] = true
		if ic.Annotations[IsDefaultClassAnnotation] == "true" {
			c.Default = true
		}
	}
	return c
}

// Handles reports whether an Ingress belongs to these classes: by
// spec.ingressClassName, else by the deprecated annotation, else when one
// of the classes is the default.
func (c Classes) Handles(ing *networkingv1.Ingress) bool {
	if ing.Spec.IngressClassName != nil {
		return c.Names[*ing.Spec.IngressClassName]
	}
	if a, ok := ing.Annotations[ClassAnnotation]; ok {
		return c.Names[a]
	}
	return c.Default
}

// SortIngresses orders Ingresses oldest first (then by namespace/name),
// the precedence for conflicting rules.
func SortIngresses(ings []*networkingv1.Ingress) {
	sort.Slice(ings, func(i, j int) bool {
		a, b := ings[i], ings[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// Build makes a Table from the Ingresses this controller handles (the
// caller filters them with Classes.Handles). certs, if not nil, keeps
// parsed key pairs between builds.
func Build(ings []*networkingv1.Ingress, src Source, certs *CertCache) *Table {
	ings = append([]*networkingv1.Ingress(nil), ings...)
	SortIngresses(ings)
	t := &Table{
		exact: map[string]*routes{}, wildcard: map[string]*routes{},
		certs: map[string]*tls.Certificate{}, wildcardCerts: map[string]*tls.Certificate{},
	}
	if certs == nil {
		certs = NewCertCache()
	}
	// Backends are shared by every rule naming the same service port.
	backends := map[string]*Backend{}
	backend := func(ns string, b *networkingv1.IngressBackend) *Backend {
		if b.Service == nil {
			r := "resource backends are not supported"
			if b.Resource != nil {
				return &Backend{Namespace: ns, Service: b.Resource.Kind + "/" + b.Resource.Name, Reason: r}
			}
			return &Backend{Namespace: ns, Reason: "backend names no service"}
		}
		port := b.Service.Port.Name
		if port == "" {
			port = strconv.Itoa(int(b.Service.Port.Number))
		}
		key := ns + "/" + b.Service.Name + ":" + port
		if be, ok := backends[key]; ok {
			return be
		}
		be := resolve(src, ns, b.Service)
		backends[key] = be
		return be
	}
	seen := map[string]string{} // host|type|path → ingress that claimed it
	usedSecrets := map[string]bool{}
	for _, ing := range ings {
		key := ing.Namespace + "/" + ing.Name
		t.Ingresses = append(t.Ingresses, key)
		if ing.Spec.DefaultBackend != nil {
			if t.def == nil {
				t.def = backend(ing.Namespace, ing.Spec.DefaultBackend)
			} else {
				t.Problems = append(t.Problems, fmt.Sprintf("ingress %s: defaultBackend ignored, an older ingress already sets one", key))
			}
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			host := normalizeHost(rule.Host)
			var r *routes
			switch {
			case host == "":
				if t.anyHost == nil {
					t.anyHost = &routes{}
				}
				r = t.anyHost
			case strings.HasPrefix(host, "*."):
				r = routesFor(t.wildcard, host[2:])
			default:
				r = routesFor(t.exact, host)
			}
			for _, p := range rule.HTTP.Paths {
				path := p.Path
				if path == "" {
					path = "/"
				}
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				if !exact {
					path = prefixKey(path)
				}
				claim := fmt.Sprintf("%s|%t|%s", host, exact, path)
				if owner, ok := seen[claim]; ok {
					if owner != key {
						t.Problems = append(t.Problems, fmt.Sprintf("ingress %s: host %q path %q already routed by older ingress %s", key, rule.Host, p.Path, owner))
					}
					continue
				}
				seen[claim] = key
				be := backend(ing.Namespace, &p.Backend)
				if exact {
					if r.exact == nil {
						r.exact = map[string]*Backend{}
					}
					r.exact[path] = be
				} else {
					if r.prefix == nil {
						r.prefix = map[string]*Backend{}
					}
					r.prefix[path] = be
				}
			}
		}
		for _, tl := range ing.Spec.TLS {
			if tl.SecretName == "" {
				continue
			}
			usedSecrets[ing.Namespace+"/"+tl.SecretName] = true
			cert, err := certs.Get(src.Secret(ing.Namespace, tl.SecretName))
			if err != nil {
				t.Problems = append(t.Problems, fmt.Sprintf("ingress %s: tls secret %s/%s: %v", key, ing.Namespace, tl.SecretName, err))
				continue
			}
			if len(tl.Hosts) == 0 {
				if t.fallbackCert == nil {
					t.fallbackCert = cert
				}
				continue
			}
			for _, h := range tl.Hosts {
				h = normalizeHost(h)
				m, name := t.certs, h
				if strings.HasPrefix(h, "*.") {
					m, name = t.wildcardCerts, h[2:]
				}
				if _, ok := m[name]; !ok {
					m[name] = cert
				}
			}
		}
	}
	certs.Forget(usedSecrets)
	return t
}

// Refs are the objects a set of Ingresses reads besides themselves, as
// "namespace/name" keys: the controller ignores changes to anything else.
type Refs struct {
	Services, Secrets map[string]bool
}

// References lists the Services (backends, default backends) and Secrets
// (TLS) that Build would read for ings.
func References(ings []*networkingv1.Ingress) Refs {
	r := Refs{Services: map[string]bool{}, Secrets: map[string]bool{}}
	add := func(ns string, b *networkingv1.IngressBackend) {
		if b != nil && b.Service != nil {
			r.Services[ns+"/"+b.Service.Name] = true
		}
	}
	for _, ing := range ings {
		add(ing.Namespace, ing.Spec.DefaultBackend)
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for i := range rule.HTTP.Paths {
				add(ing.Namespace, &rule.HTTP.Paths[i].Backend)
			}
		}
		for _, tl := range ing.Spec.TLS {
			if tl.SecretName != "" {
				r.Secrets[ing.Namespace+"/"+tl.SecretName] = true
			}
		}
	}
	return r
}

func routesFor(m map[string]*routes, host string) *routes {
	r := m[host]
	if r == nil {
		r = &routes{}
		m[host] = r
	}
	return r
}

// resolve finds the ready endpoints behind a Service port.
func resolve(src Source, ns string, sb *networkingv1.IngressServiceBackend) *Backend {
	be := &Backend{Namespace: ns, Service: sb.Name, Port: sb.Port.Name}
	if be.Port == "" {
		be.Port = strconv.Itoa(int(sb.Port.Number))
	}
	svc := src.Service(ns, sb.Name)
	if svc == nil {
		be.Reason = "service not found"
		return be
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if sb.Port.Number == 0 {
			be.Reason = "an ExternalName service needs a port number"
			return be
		}
		be.Endpoints = []string{net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(sb.Port.Number)))}
		return be
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if (sb.Port.Name != "" && p.Name == sb.Port.Name) || (sb.Port.Name == "" && p.Port == sb.Port.Number) {
			sp = p
			break
		}
	}
	if sp == nil {
		be.Reason = "service has no port " + be.Port
		return be
	}
	if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
		be.Reason = "service port " + be.Port + " is not TCP"
		return be
	}
	seen := map[string]bool{}
	for _, s := range src.EndpointSlices(ns, svc.Name) {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32 = -1
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == corev1.ProtocolTCP && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				hp := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if !seen[hp] {
					seen[hp] = true
					be.Endpoints = append(be.Endpoints, hp)
				}
			}
		}
	}
	sort.Strings(be.Endpoints)
	if len(be.Endpoints) == 0 {
		be.Reason = "no ready endpoints"
	}
	return be
}

// CertCache keeps parsed TLS key pairs by secret, re-parsing only when a
// secret's resourceVersion changes. Safe for concurrent use.
type CertCache struct {
	mu sync.Mutex
	m  map[string]certEntry
}

type certEntry struct {
	rv   string
	cert *tls.Certificate
	err  error
}

// NewCertCache returns an empty cache.
func NewCertCache() *CertCache { return &CertCache{m: map[string]certEntry{}} }

// Get parses a kubernetes.io/tls secret (nil: not found).
func (c *CertCache) Get(s *corev1.Secret) (*tls.Certificate, error) {
	if s == nil {
		return nil, fmt.Errorf("not found (or not of type %s)", corev1.SecretTypeTLS)
	}
	key := s.Namespace + "/" + s.Name
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && e.rv == s.ResourceVersion && s.ResourceVersion != "" {
		return e.cert, e.err
	}
	var e certEntry
	e.rv = s.ResourceVersion
	if s.Type != corev1.SecretTypeTLS {
		e.err = fmt.Errorf("type is %q, not %s", s.Type, corev1.SecretTypeTLS)
	} else if kp, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		e.err = fmt.Errorf("parsing key pair: %w", err)
	} else {
		e.cert = &kp
	}
	c.m[key] = e
	return e.cert, e.err
}

// Forget drops secrets not in keep (namespace/name), so deleted secrets
// do not stay in memory.
func (c *CertCache) Forget(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !keep[k] {
			delete(c.m, k)
		}
	}
}
