package registry

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NewScheme returns a scheme with every built-in group version skiff serves,
// plus the meta/v1 types (options, Status, Table, WatchEvent) registered in
// each of them as upstream does.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	adders := []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		autoscalingv1.AddToScheme, autoscalingv2.AddToScheme, policyv1.AddToScheme,
		coordinationv1.AddToScheme, discoveryv1.AddToScheme, networkingv1.AddToScheme,
		storagev1.AddToScheme, rbacv1.AddToScheme, schedulingv1.AddToScheme,
		eventsv1.AddToScheme, certificatesv1.AddToScheme, authenticationv1.AddToScheme,
		authorizationv1.AddToScheme, admissionregistrationv1.AddToScheme,
		apidiscoveryv2.AddToScheme, apidiscoveryv2beta1.AddToScheme,
	}
	for _, add := range adders {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("registering built-in types: %v", err))
		}
	}
	// Unversioned meta types (Status, WatchEvent, options) in "v1" so the
	// parameter codec and error encoding work for every group.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	// Table, PartialObjectMetadata(List) in meta.k8s.io/v1 for
	// "as=Table" and metadata-only clients.
	metav1.AddMetaToScheme(s)
	return s
}
