package core

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestResourcesNames(t *testing.T) {
	want := map[string]struct {
		kind       string
		namespaced bool
		short      string
		all        bool
	}{
		"pods": {"Pod", true, "po", true}, "services": {"Service", true, "svc", true},
		"namespaces": {"Namespace", false, "ns", false}, "nodes": {"Node", false, "no", false},
		"configmaps": {"ConfigMap", true, "cm", false}, "secrets": {"Secret", true, "", false},
		"serviceaccounts": {"ServiceAccount", true, "sa", false}, "endpoints": {"Endpoints", true, "ep", false},
		"events": {"Event", true, "ev", false}, "persistentvolumes": {"PersistentVolume", false, "pv", false},
		"persistentvolumeclaims": {"PersistentVolumeClaim", true, "pvc", false},
		"limitranges":            {"LimitRange", true, "limits", false}, "resourcequotas": {"ResourceQuota", true, "quota", false},
		"replicationcontrollers": {"ReplicationController", true, "rc", true}, "podtemplates": {"PodTemplate", true, "", false},
	}
	rs := Resources()
	if len(rs) != len(want) {
		t.Fatalf("got %d resources, want %d", len(rs), len(want))
	}
	for _, r := range rs {
		w, ok := want[r.Resource]
		if !ok {
			t.Errorf("unexpected resource %s", r.Resource)
			continue
		}
		if r.Kind != w.kind || r.ListKind != w.kind+"List" || r.Namespaced != w.namespaced || r.GroupVersion.String() != "v1" {
			t.Errorf("%s: descriptor %+v", r.Resource, r)
		}
		if got := strings.Join(r.ShortNames, ","); got != w.short {
			t.Errorf("%s: short names %q, want %q", r.Resource, got, w.short)
		}
		if (len(r.Categories) == 1 && r.Categories[0] == "all") != w.all {
			t.Errorf("%s: categories %v", r.Resource, r.Categories)
		}
		if r.New == nil || r.NewList == nil || r.TableRow == nil {
			t.Errorf("%s: missing New/NewList/TableRow", r.Resource)
			continue
		}
		obj := r.New()
		if got := obj.GetObjectKind(); got == nil {
			t.Errorf("%s: New returned nil kind", r.Resource)
		}
		if r.Singular == "" {
			t.Errorf("%s: singular missing", r.Resource)
		}
		if r.Default != nil {
			r.Default(obj)
		}
		if row := r.TableRow(obj); len(row) != len(r.TableColumns) {
			t.Errorf("%s: %d cells for %d columns", r.Resource, len(row), len(r.TableColumns))
		}
	}
}

func TestRCScale(t *testing.T) {
	r := replicationControllerResource()
	rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Replicas: ptr(int32(3)), Selector: map[string]string{"app": "a"}},
		Status: corev1.ReplicationControllerStatus{Replicas: 2}}
	spec, status, sel := r.Scale.Get(rc)
	if spec != 3 || status != 2 || sel != "app=a" {
		t.Errorf("scale get = %d %d %q", spec, status, sel)
	}
	r.Scale.SetReplicas(rc, 5)
	if *rc.Spec.Replicas != 5 {
		t.Errorf("set replicas failed")
	}
}

func validService() *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "a"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
	}}
	defaultService(s)
	return s
}

func TestValidateService(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *corev1.Service)
		want   []wantErr
	}{
		{"valid", func(s *corev1.Service) {}, nil},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, []wantErr{{field.ErrorTypeRequired, "spec.ports"}}},
		{"headless without ports", func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "None" }, nil},
		{"unnamed port among many", func(s *corev1.Service) { s.Spec.Ports[1].Name = "" },
			[]wantErr{{field.ErrorTypeRequired, "spec.ports[1].name"}}},
		{"duplicate port name", func(s *corev1.Service) { s.Spec.Ports[1].Name = "http" },
			[]wantErr{{field.ErrorTypeDuplicate, "spec.ports[1].name"}}},
		{"port out of range", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 },
			[]wantErr{{field.ErrorTypeInvalid, "spec.ports[0].port"}}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Ingress" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.type"}}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 },
			[]wantErr{{field.ErrorTypeForbidden, "spec.ports[0].nodePort"}}},
		{"nodePort out of range", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.Ports[0].NodePort = 80
		}, []wantErr{{field.ErrorTypeInvalid, "spec.ports[0].nodePort"}}},
		{"bad clusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.0.0" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.clusterIP"}}},
		{"externalName required", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.InternalTrafficPolicy = nil
		}, []wantErr{{field.ErrorTypeRequired, "spec.externalName"}}},
	}
	for _, tc := range cases {
		s := validService()
		tc.mutate(s)
		checkErrs(t, tc.name, validateService(s), tc.want...)
	}
	old := validService()
	old.Spec.ClusterIP = "10.0.0.10"
	s := old.DeepCopy()
	s.Spec.ClusterIP = "10.0.0.11"
	checkErrs(t, "clusterIP immutable", validateServiceUpdate(s, old), wantErr{field.ErrorTypeInvalid, "spec.clusterIP"})
}

func TestServiceRow(t *testing.T) {
	fixClock(t)
	s := validService()
	s.CreationTimestamp = ago(time.Hour)
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Spec.ClusterIP = "10.0.0.10"
	s.Spec.Ports[0].NodePort = 30080
	row := serviceRow(s)
	want := []interface{}{"s", "LoadBalancer", "10.0.0.10", "<pending>", "80:30080/TCP,443/TCP", "60m", "app=a"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %s = %v, want %v", serviceColumns[i].Name, row[i], want[i])
		}
	}
}

func TestConfigMapAndSecret(t *testing.T) {
	cmr := configMapResource()
	cm := &corev1.ConfigMap{Data: map[string]string{"ok.key": "v", "bad/key": "v"}}
	checkErrs(t, "configmap key", cmr.Validate(cm), wantErr{field.ErrorTypeInvalid, "data[bad/key]"})
	big := &corev1.ConfigMap{Data: map[string]string{"k": strings.Repeat("x", corev1.MaxSecretSize+1)}}
	checkErrs(t, "configmap size", cmr.Validate(big), wantErr{field.ErrorTypeTooLong, "[]"})
	old := &corev1.ConfigMap{Immutable: ptr(true), Data: map[string]string{"a": "1"}}
	upd := old.DeepCopy()
	upd.Data["a"] = "2"
	checkErrs(t, "immutable configmap", cmr.ValidateUpdate(upd, old), wantErr{field.ErrorTypeForbidden, "data"})

	sr := secretResource()
	s := &corev1.Secret{}
	sr.Default(s)
	if s.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret type default = %q", s.Type)
	}
	tls := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x")}}
	checkErrs(t, "tls key", sr.Validate(tls), wantErr{field.ErrorTypeRequired, "data[tls.key]"})
	sat := &corev1.Secret{Type: corev1.SecretTypeServiceAccountToken}
	checkErrs(t, "sa token", sr.Validate(sat), wantErr{field.ErrorTypeRequired, "metadata.annotations[kubernetes.io/service-account.name]"})
	oldS := &corev1.Secret{Type: corev1.SecretTypeOpaque}
	newS := &corev1.Secret{Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": nil}}
	checkErrs(t, "type immutable", sr.ValidateUpdate(newS, oldS), wantErr{field.ErrorTypeInvalid, "type"})
	withString := &corev1.Secret{StringData: map[string]string{"a": "b"}}
	sr.PrepareForCreate(withString)
	if string(withString.Data["a"]) != "b" || withString.StringData != nil {
		t.Errorf("stringData not folded: %+v", withString)
	}
}

func TestNamespace(t *testing.T) {
	r := namespaceResource()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	r.Default(ns)
	r.PrepareForCreate(ns)
	if ns.Status.Phase != corev1.NamespaceActive || len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != "kubernetes" ||
		ns.Labels[namespaceNameLabel] != "team-a" {
		t.Errorf("namespace after create: %+v", ns)
	}
	checkErrs(t, "valid ns", r.Validate(ns))
	bad := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a.b"}}
	checkErrs(t, "dotted ns", r.Validate(bad), wantErr{field.ErrorTypeInvalid, "metadata.name"})
}

func TestNode(t *testing.T) {
	r := nodeResource()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		Spec: corev1.NodeSpec{Unschedulable: true, PodCIDR: "10.244.0.0/24"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.1"}}}
	r.Default(n)
	if _, ok := n.Status.Allocatable[corev1.ResourceCPU]; !ok {
		t.Errorf("allocatable not defaulted from capacity")
	}
	row := nodeRow(n)
	if row[1] != "Ready,SchedulingDisabled" || row[2] != "control-plane" || row[4] != "v1.37.1" || row[5] != "<none>" {
		t.Errorf("node row = %v", row)
	}
	old := n.DeepCopy()
	upd := n.DeepCopy()
	upd.Spec.PodCIDR = "10.244.1.0/24"
	upd.Spec.PodCIDRs = nil
	checkErrs(t, "podCIDR change", r.ValidateUpdate(upd, old), wantErr{field.ErrorTypeForbidden, "spec.podCIDR"})
	st := n.DeepCopy()
	st.Spec.Unschedulable = false
	r.PrepareForStatusUpdate(st, old)
	if !st.Spec.Unschedulable {
		t.Errorf("status update changed spec")
	}
	if r.SelectableFields(n)["spec.unschedulable"] != "true" {
		t.Errorf("fields = %v", r.SelectableFields(n))
	}
}

func TestReplicationControllerValidation(t *testing.T) {
	r := replicationControllerResource()
	mk := func() *corev1.ReplicationController {
		rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
		r.Default(rc)
		return rc
	}
	checkErrs(t, "valid rc", r.Validate(mk()))
	rc := mk()
	rc.Spec.Selector = map[string]string{"app": "b"}
	checkErrs(t, "selector mismatch", r.Validate(rc), wantErr{field.ErrorTypeInvalid, "spec.template.metadata.labels"})
	rc = mk()
	rc.Spec.Replicas = ptr(int32(-1))
	checkErrs(t, "negative replicas", r.Validate(rc), wantErr{field.ErrorTypeInvalid, "spec.replicas"})
	rc = mk()
	rc.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	checkErrs(t, "restartPolicy", r.Validate(rc), wantErr{field.ErrorTypeNotSupported, "spec.template.spec.restartPolicy"})
}

func TestPVC(t *testing.T) {
	r := persistentVolumeClaimResource()
	pvc := &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	r.Default(pvc)
	if pvc.Spec.VolumeMode == nil || *pvc.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("volumeMode not defaulted")
	}
	checkErrs(t, "valid pvc", r.Validate(pvc))
	noModes := pvc.DeepCopy()
	noModes.Spec.AccessModes = nil
	noModes.Spec.Resources.Requests = nil
	checkErrs(t, "missing fields", r.Validate(noModes),
		wantErr{field.ErrorTypeRequired, "spec.accessModes"}, wantErr{field.ErrorTypeRequired, "spec.resources[storage]"})

	bound := pvc.DeepCopy()
	bound.Status.Phase = corev1.ClaimBound
	grow := bound.DeepCopy()
	grow.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	checkErrs(t, "expand bound", r.ValidateUpdate(grow, bound))
	mode := bound.DeepCopy()
	mode.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	checkErrs(t, "change modes", r.ValidateUpdate(mode, bound), wantErr{field.ErrorTypeForbidden, "spec"})
}

func TestPV(t *testing.T) {
	r := persistentVolumeResource()
	pv := &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data"}}}}
	r.Default(pv)
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || *pv.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("pv defaults: %+v", pv.Spec)
	}
	checkErrs(t, "valid pv", r.Validate(pv))
	none := pv.DeepCopy()
	none.Spec.HostPath = nil
	none.Spec.Capacity = nil
	checkErrs(t, "no source no capacity", r.Validate(none),
		wantErr{field.ErrorTypeRequired, "spec"}, wantErr{field.ErrorTypeRequired, "spec.capacity"})
}

func TestEventValidationAndFields(t *testing.T) {
	r := eventResource()
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "other", Name: "p"},
		Reason:         "Started", Type: "Normal", Source: corev1.EventSource{Component: "kubelet"}}
	checkErrs(t, "namespace mismatch", r.Validate(ev), wantErr{field.ErrorTypeInvalid, "involvedObject.namespace"})
	ev.InvolvedObject.Namespace = "default"
	checkErrs(t, "valid", r.Validate(ev))
	f := r.SelectableFields(ev)
	if f["involvedObject.name"] != "p" || f["source"] != "kubelet" || f["reason"] != "Started" {
		t.Errorf("fields = %v", f)
	}
	if row := eventRow(ev); row[3] != "pod/p" || row[5] != "kubelet" {
		t.Errorf("event row = %v", row)
	}
}

func TestLimitRange(t *testing.T) {
	r := limitRangeResource()
	lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
		Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
		Min: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}}
	r.Default(lr)
	it := lr.Spec.Limits[0]
	if q := it.Default[corev1.ResourceCPU]; q.String() != "2" {
		t.Errorf("default cpu = %s", q.String())
	}
	if q := it.DefaultRequest[corev1.ResourceMemory]; q.String() != "64Mi" {
		t.Errorf("default request memory = %s", q.String())
	}
	checkErrs(t, "valid lr", r.Validate(lr))
	lr.Spec.Limits[0].Min[corev1.ResourceCPU] = resource.MustParse("3")
	lr.Spec.Limits[0].DefaultRequest[corev1.ResourceCPU] = resource.MustParse("3")
	errs := r.Validate(lr)
	if len(errs) == 0 || errs[0].Field != "spec.limits[0].min[cpu]" {
		t.Errorf("want min>max error, got %v", errs)
	}
}

func TestEndpoints(t *testing.T) {
	ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}},
		Ports:     []corev1.EndpointPort{{Name: "a", Port: 80}, {Name: "b", Port: 443}}}}}
	endpointsResource().Default(ep)
	checkErrs(t, "valid ep", validateEndpoints(ep))
	if got := formatEndpoints(ep); got != "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..." {
		t.Errorf("formatEndpoints = %q", got)
	}
	ep.Subsets[0].Addresses[0].IP = "127.0.0.1"
	checkErrs(t, "loopback", validateEndpoints(ep), wantErr{field.ErrorTypeInvalid, "subsets[0].addresses[0].ip"})
}
