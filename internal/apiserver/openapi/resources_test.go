package openapi

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/registry"
)

// testResources describes a few resources the way the registry packages
// do: namespaced and cluster-scoped, core and named groups, with status,
// scale and create-only subresources.
func testResources() []*registry.Resource {
	core := schema.GroupVersion{Version: "v1"}
	apps := appsv1.SchemeGroupVersion
	return []*registry.Resource{
		{
			GroupVersion: core, Resource: "pods", Singular: "pod", Kind: "Pod", ListKind: "PodList", Namespaced: true,
			Subresources: []string{"status", "binding", "eviction", "log"},
			New:          func() runtime.Object { return &corev1.Pod{} },
			NewList:      func() runtime.Object { return &corev1.PodList{} },
		},
		{
			GroupVersion: core, Resource: "namespaces", Singular: "namespace", Kind: "Namespace", ListKind: "NamespaceList",
			Verbs:        []string{"create", "delete", "get", "list", "patch", "update", "watch"},
			Subresources: []string{"status"},
		},
		{
			GroupVersion: core, Resource: "configmaps", Singular: "configmap", Kind: "ConfigMap", ListKind: "ConfigMapList", Namespaced: true,
		},
		{
			GroupVersion: apps, Resource: "deployments", Singular: "deployment", Kind: "Deployment", ListKind: "DeploymentList", Namespaced: true,
			Subresources: []string{"status", "scale"},
			New:          func() runtime.Object { return &appsv1.Deployment{} },
			NewList:      func() runtime.Object { return &appsv1.DeploymentList{} },
		},
		{
			GroupVersion: rbacv1.SchemeGroupVersion, Resource: "clusterroles", Singular: "clusterrole", Kind: "ClusterRole", ListKind: "ClusterRoleList",
		},
	}
}
