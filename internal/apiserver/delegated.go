package apiserver

import (
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// DelegatedGroup is an API group version whose resources are not objects
// in storage but computed by a handler, as an aggregated API would be
// (metrics.k8s.io, internal/apiserver/metricsapi). The server lists it in
// discovery (legacy and aggregated) and hands it every request under
// /apis/GROUP/VERSION/ after authentication.
type DelegatedGroup struct {
	GroupVersion schema.GroupVersion
	Resources    []metav1.APIResource
	Handler      http.Handler
}

// delegatedFor is the handler of a request under a delegated group
// version, or nil.
func (s *Server) delegatedFor(path string) http.Handler {
	for _, g := range s.cfg.Delegated {
		prefix := "/apis/" + g.GroupVersion.Group + "/" + g.GroupVersion.Version + "/"
		if strings.HasPrefix(path, prefix) && len(path) > len(prefix) {
			return g.Handler
		}
	}
	return nil
}

// addDelegated adds the delegated groups to the discovery documents.
func (d *discoveryCache) addDelegated() {
	if len(d.s.cfg.Delegated) == 0 {
		return
	}
	for _, g := range d.s.cfg.Delegated {
		gv := g.GroupVersion
		gvd := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		ag, ok := d.groups[gv.Group]
		if !ok {
			ag = &metav1.APIGroup{Name: gv.Group, PreferredVersion: gvd}
			ag.Kind, ag.APIVersion = "APIGroup", "v1"
			d.groups[gv.Group] = ag
		}
		ag.Versions = append(ag.Versions, gvd)
		rl := &metav1.APIResourceList{GroupVersion: gv.String(), APIResources: g.Resources}
		rl.Kind, rl.APIVersion = "APIResourceList", "v1"
		d.resourceLists[gv.String()] = rl

		vd := apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		for _, r := range g.Resources {
			scope := apidiscoveryv2.ScopeCluster
			if r.Namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			vd.Resources = append(vd.Resources, apidiscoveryv2.APIResourceDiscovery{
				Resource: r.Name, SingularResource: r.SingularName, Scope: scope, Verbs: r.Verbs,
				ResponseKind: &metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: r.Kind},
			})
		}
		found := false
		for i := range d.aggGroups.Items {
			if d.aggGroups.Items[i].Name == gv.Group {
				d.aggGroups.Items[i].Versions = append(d.aggGroups.Items[i].Versions, vd)
				found = true
			}
		}
		if !found {
			agg := apidiscoveryv2.APIGroupDiscovery{Versions: []apidiscoveryv2.APIVersionDiscovery{vd}}
			agg.Name = gv.Group
			d.aggGroups.Items = append(d.aggGroups.Items, agg)
		}
	}
	// The group list mirrors d.groups (a new group, or new versions).
	d.groupList.Groups = d.groupList.Groups[:0]
	seen := map[string]bool{}
	for _, g := range d.s.groups {
		if g.name != "" && !seen[g.name] {
			seen[g.name] = true
			d.groupList.Groups = append(d.groupList.Groups, listed(d.groups[g.name]))
		}
	}
	for _, g := range d.s.cfg.Delegated {
		if !seen[g.GroupVersion.Group] {
			seen[g.GroupVersion.Group] = true
			d.groupList.Groups = append(d.groupList.Groups, listed(d.groups[g.GroupVersion.Group]))
		}
	}
}

func listed(g *metav1.APIGroup) metav1.APIGroup {
	out := *g
	out.Kind, out.APIVersion = "", ""
	return out
}
