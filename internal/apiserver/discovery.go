package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/registry"
)

// discoveryCache holds the discovery documents, computed once: the set of
// resources is fixed for the life of the server.
type discoveryCache struct {
	s    *Server
	once sync.Once

	apiVersions   *metav1.APIVersions
	groupList     *metav1.APIGroupList
	groups        map[string]*metav1.APIGroup
	resourceLists map[string]*metav1.APIResourceList // "group/version"
	aggLegacy     *apidiscoveryv2.APIGroupDiscoveryList
	aggGroups     *apidiscoveryv2.APIGroupDiscoveryList
	aggLegacyB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
	aggGroupsB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
	etagLegacy    string
	etagGroups    string
}

func newDiscoveryCache(s *Server) *discoveryCache { return &discoveryCache{s: s} }

func defaultVerbs(r *registry.Resource) []string {
	if r.Verbs != nil {
		return r.Verbs
	}
	return []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
}

func (d *discoveryCache) build() {
	s := d.s
	d.groups = map[string]*metav1.APIGroup{}
	d.resourceLists = map[string]*metav1.APIResourceList{}
	d.apiVersions = &metav1.APIVersions{Versions: []string{"v1"}, ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: s.cfg.ExternalAddress}}}
	d.apiVersions.Kind = "APIVersions"
	d.groupList = &metav1.APIGroupList{}
	d.groupList.Kind, d.groupList.APIVersion = "APIGroupList", "v1"
	d.aggLegacy = &apidiscoveryv2.APIGroupDiscoveryList{}
	d.aggGroups = &apidiscoveryv2.APIGroupDiscoveryList{}
	byGV := map[string][]*registry.Resource{}
	for _, r := range s.Resources() {
		byGV[r.GroupVersion.String()] = append(byGV[r.GroupVersion.String()], r)
	}
	for _, g := range s.groups {
		var ag metav1.APIGroup
		ag.Name = g.name
		agg := apidiscoveryv2.APIGroupDiscovery{}
		agg.Name = g.name
		for _, v := range g.versions {
			gv := schema.GroupVersion{Group: g.name, Version: v}
			gvd := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: v}
			ag.Versions = append(ag.Versions, gvd)
			rl := &metav1.APIResourceList{GroupVersion: gv.String()}
			rl.Kind, rl.APIVersion = "APIResourceList", "v1"
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			for _, r := range byGV[gv.String()] {
				hash := sha256.Sum256([]byte(r.StorageGVR().String()))
				rl.APIResources = append(rl.APIResources, metav1.APIResource{
					Name: r.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
					Verbs: defaultVerbs(r), ShortNames: r.ShortNames, Categories: r.Categories,
					StorageVersionHash: hex.EncodeToString(hash[:])[:12],
				})
				scope := apidiscoveryv2.ScopeCluster
				if r.Namespaced {
					scope = apidiscoveryv2.ScopeNamespace
				}
				rd := apidiscoveryv2.APIResourceDiscovery{
					Resource: r.Resource, SingularResource: r.Singular, Scope: scope,
					ResponseKind: &metav1.GroupVersionKind{Group: g.name, Version: v, Kind: r.Kind},
					Verbs:        defaultVerbs(r), ShortNames: r.ShortNames, Categories: r.Categories,
				}
				for _, sub := range r.Subresources {
					kind, verbs := subresourceKind(r, sub)
					if kind.Kind == "" {
						continue
					}
					rl.APIResources = append(rl.APIResources, metav1.APIResource{
						Name: r.Resource + "/" + sub, Namespaced: r.Namespaced, Kind: kind.Kind,
						Group: kind.Group, Version: kind.Version, Verbs: verbs,
					})
					rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
						Subresource: sub, ResponseKind: &metav1.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind}, Verbs: verbs,
					})
				}
				vd.Resources = append(vd.Resources, rd)
			}
			d.resourceLists[gv.String()] = rl
			agg.Versions = append(agg.Versions, vd)
		}
		if len(ag.Versions) > 0 {
			ag.PreferredVersion = ag.Versions[0]
		}
		if g.name == "" {
			d.aggLegacy.Items = append(d.aggLegacy.Items, agg)
			continue
		}
		ag.Kind, ag.APIVersion = "APIGroup", "v1"
		d.groups[g.name] = &ag
		gl := ag
		gl.Kind, gl.APIVersion = "", ""
		d.groupList.Groups = append(d.groupList.Groups, gl)
		d.aggGroups.Items = append(d.aggGroups.Items, agg)
	}
	d.addDelegated()
	gvk := apidiscoveryv2.SchemeGroupVersion.WithKind("APIGroupDiscoveryList")
	d.aggLegacy.SetGroupVersionKind(gvk)
	d.aggGroups.SetGroupVersionKind(gvk)
	d.aggLegacyB1 = toV2beta1(d.aggLegacy)
	d.aggGroupsB1 = toV2beta1(d.aggGroups)
	d.etagLegacy = etagOf(d.aggLegacy)
	d.etagGroups = etagOf(d.aggGroups)
}

func etagOf(v interface{}) string {
	b, _ := jsonMarshal(v)
	h := sha256.Sum256(b)
	return `"` + hex.EncodeToString(h[:16]) + `"`
}

// toV2beta1 converts: the two versions have the same shape.
func toV2beta1(in *apidiscoveryv2.APIGroupDiscoveryList) *apidiscoveryv2beta1.APIGroupDiscoveryList {
	out := &apidiscoveryv2beta1.APIGroupDiscoveryList{}
	b, _ := jsonMarshal(in)
	_ = jsonUnmarshal(b, out)
	out.SetGroupVersionKind(apidiscoveryv2beta1.SchemeGroupVersion.WithKind("APIGroupDiscoveryList"))
	return out
}

// subresourceKind gives the kind and verbs a subresource serves.
func subresourceKind(r *registry.Resource, sub string) (metav1.GroupVersionKind, []string) {
	self := metav1.GroupVersionKind{Group: r.GroupVersion.Group, Version: r.GroupVersion.Version, Kind: r.Kind}
	switch sub {
	case "status":
		return self, []string{"get", "patch", "update"}
	case "scale":
		return metav1.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, []string{"get", "patch", "update"}
	case "binding":
		return metav1.GroupVersionKind{Version: "v1", Kind: "Binding"}, []string{"create"}
	case "eviction":
		return metav1.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, []string{"create"}
	case "token":
		return metav1.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, []string{"create"}
	case "log":
		return metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, []string{"get"}
	case "exec", "attach", "portforward":
		return metav1.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}, []string{"create", "get"}
	case "proxy":
		return metav1.GroupVersionKind{Version: "v1", Kind: proxyKind(r)}, []string{"create", "delete", "get", "patch", "update"}
	case "finalize":
		return self, []string{"update"}
	case "approval":
		return self, []string{"get", "patch", "update"}
	case "ephemeralcontainers", "resize":
		return self, []string{"get", "patch", "update"}
	}
	return metav1.GroupVersionKind{}, nil
}

func proxyKind(r *registry.Resource) string {
	switch r.Resource {
	case "pods":
		return "PodProxyOptions"
	case "services":
		return "ServiceProxyOptions"
	case "nodes":
		return "NodeProxyOptions"
	}
	return "Status"
}

// serveDiscovery handles /api, /api/v1, /apis, /apis/g, /apis/g/v.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	d := s.discovery
	d.once.Do(d.build)
	parts := splitPath(r.URL.Path)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{}, r.Method))
		return
	}
	switch {
	case len(parts) == 1 && (parts[0] == "api" || parts[0] == "apis"):
		mc, err := s.neg.output(r, outputDiscoveryV2, outputDiscoveryV2Beta1)
		if err != nil {
			s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", err.Error(), 0, false))
			return
		}
		legacy := parts[0] == "api"
		var obj runtime.Object
		switch mc.kind {
		case outputDiscoveryV2, outputDiscoveryV2Beta1:
			etag := d.etagGroups
			if legacy {
				etag = d.etagLegacy
			}
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
			switch {
			case mc.kind == outputDiscoveryV2 && legacy:
				obj = d.aggLegacy
			case mc.kind == outputDiscoveryV2:
				obj = d.aggGroups
			case legacy:
				obj = d.aggLegacyB1
			default:
				obj = d.aggGroupsB1
			}
			ct := mc.info.MediaType + ";g=apidiscovery.k8s.io;v=" + map[bool]string{true: "v2", false: "v2beta1"}[mc.kind == outputDiscoveryV2] + ";as=APIGroupDiscoveryList"
			s.writeRaw(w, http.StatusOK, ct, mc.info.Serializer, obj)
			return
		}
		if legacy {
			obj = d.apiVersions
		} else {
			obj = d.groupList
		}
		s.writeRaw(w, http.StatusOK, mc.info.MediaType, mc.info.Serializer, obj)
	case len(parts) == 2 && parts[0] == "api":
		rl := d.resourceLists[parts[1]]
		if rl == nil {
			s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
			return
		}
		s.writeDiscoveryJSON(w, r, rl)
	case len(parts) == 2 && parts[0] == "apis":
		g := d.groups[parts[1]]
		if g == nil {
			s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
			return
		}
		s.writeDiscoveryJSON(w, r, g)
	case len(parts) == 3 && parts[0] == "apis":
		rl := d.resourceLists[parts[1]+"/"+parts[2]]
		if rl == nil {
			s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
			return
		}
		s.writeDiscoveryJSON(w, r, rl)
	default:
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, strings.Join(parts, "/")))
	}
}

func (s *Server) writeDiscoveryJSON(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	mc, err := s.neg.output(r)
	if err != nil {
		mc.info = s.neg.byType[mediaJSON]
	}
	s.writeRaw(w, http.StatusOK, mc.info.MediaType, mc.info.Serializer, obj)
}
