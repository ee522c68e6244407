package server

import (
	"context"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"skiff.dev/skiff/internal/apiserver/servicealloc"
	"skiff.dev/skiff/internal/registry/generic"
)

// defaultNamespaces exist in every cluster.
var defaultNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// bootstrap creates the objects every cluster has, idempotently.
func (s *Server) bootstrap(ctx context.Context) error {
	ns := s.store("", "namespaces")
	for _, name := range defaultNamespaces {
		if err := createIfMissing(ctx, ns, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: kubernetesServiceIP(s.cfg.ServiceCIDR),
			Ports:     []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(s.cfg.HTTPSPort))}},
		},
	}
	if err := createIfMissing(ctx, s.store("", "services"), "default", svc); err != nil {
		return fmt.Errorf("creating the kubernetes service: %w", err)
	}
	if err := createIfMissing(ctx, s.store("", "services"), "kube-system", kubeDNSService(s.cfg.ServiceCIDR)); err != nil {
		return fmt.Errorf("creating the kube-dns service: %w", err)
	}
	if err := createIfMissing(ctx, s.store("storage.k8s.io", "storageclasses"), "", s.defaultStorageClass()); err != nil {
		return fmt.Errorf("creating the default storage class: %w", err)
	}
	if err := createIfMissing(ctx, s.store("networking.k8s.io", "ingressclasses"), "", defaultIngressClass()); err != nil {
		return fmt.Errorf("creating the default ingress class: %w", err)
	}
	return nil
}

// defaultStorageClass is "local-path": node-local hostPath volumes under
// <data dir>/storage from the built-in skiff.io/local-path provisioner,
// bound when the first pod is scheduled, deleted with their claim.
func (s *Server) defaultStorageClass() *storagev1.StorageClass {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "local-path",
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       "skiff.io/local-path",
		Parameters:        map[string]string{"basePath": filepath.Join(s.cfg.DataDir, "storage")},
		ReclaimPolicy:     &del,
		VolumeBindingMode: &wffc,
	}
}

func createIfMissing(ctx context.Context, st *generic.Store, ns string, obj runtime.Object) error {
	_, err := st.Create(ctx, ns, obj, generic.CreateOptions{FieldManager: "skiff"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// KubeDNSServiceName is the cluster DNS service in kube-system.
const KubeDNSServiceName = "kube-dns"

// kubeDNSService is kube-system/kube-dns at the tenth address of the
// service CIDR (10.43.0.10 by default), the address pods get as their
// nameserver. It has no selector: cluster DNS is served by every agent on
// its own node, and each agent publishes its server as an EndpointSlice
// of this service (internal/agent/network.go). internalTrafficPolicy Local
// keeps a pod's queries on its own node.
func kubeDNSService(cidr string) *corev1.Service {
	local := corev1.ServiceInternalTrafficPolicyLocal
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: KubeDNSServiceName, Namespace: "kube-system",
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"},
		},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: KubeDNSServiceIP(cidr),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
			},
			InternalTrafficPolicy: &local,
		},
	}
}

// KubeDNSServiceIP is the tenth address of the service CIDR (10.43.0.10
// by default), or "" for a CIDR that does not parse.
func KubeDNSServiceIP(cidr string) string {
	r, err := servicealloc.ParseIPRange(cidr)
	if err != nil {
		return ""
	}
	return r.Addr(9).String()
}

// kubernetesServiceIP is the first address of the service CIDR (10.43.0.1
// by default), which the kubernetes service requests explicitly.
func kubernetesServiceIP(cidr string) string {
	r, err := servicealloc.ParseIPRange(cidr)
	if err != nil {
		return "" // buildAPI already refused a bad CIDR
	}
	return r.Addr(0).String()
}
