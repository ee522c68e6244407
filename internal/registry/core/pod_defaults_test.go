package core

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func TestDefaultPullPolicy(t *testing.T) {
	cases := map[string]corev1.PullPolicy{
		"nginx":                        corev1.PullAlways,
		"nginx:latest":                 corev1.PullAlways,
		"nginx:1.25":                   corev1.PullIfNotPresent,
		"localhost:5000/nginx":         corev1.PullAlways,
		"localhost:5000/nginx:1.0":     corev1.PullIfNotPresent,
		"nginx@sha256:0123456789abcde": corev1.PullIfNotPresent,
	}
	for image, want := range cases {
		if got := defaultPullPolicy(image); got != want {
			t.Errorf("defaultPullPolicy(%q) = %s, want %s", image, got, want)
		}
	}
}

func TestDefaultPod(t *testing.T) {
	in := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "c", Image: "nginx:1.25",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}},
			Env: []corev1.EnvVar{{Name: "N", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("1")}},
		}},
		Volumes: []corev1.Volume{
			{Name: "empty"},
			{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "x"}}},
			{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}},
		},
	}}
	want := in.DeepCopy()
	c := &want.Spec.Containers[0]
	c.ImagePullPolicy = corev1.PullIfNotPresent
	c.TerminationMessagePath = "/dev/termination-log"
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	c.Ports[0].Protocol = corev1.ProtocolTCP
	c.Env[0].ValueFrom.FieldRef.APIVersion = "v1"
	c.LivenessProbe.TimeoutSeconds, c.LivenessProbe.PeriodSeconds = 1, 10
	c.LivenessProbe.SuccessThreshold, c.LivenessProbe.FailureThreshold = 1, 3
	c.LivenessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Scheme = "/", corev1.URISchemeHTTP
	c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	want.Spec.Volumes[0].EmptyDir = &corev1.EmptyDirVolumeSource{}
	want.Spec.Volumes[1].Secret.DefaultMode = ptr(int32(0o644))
	want.Spec.Volumes[2].HostPath.Type = ptr(corev1.HostPathUnset)
	want.Spec.RestartPolicy = corev1.RestartPolicyAlways
	want.Spec.DNSPolicy = corev1.DNSClusterFirst
	want.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
	want.Spec.SchedulerName = "default-scheduler"
	want.Spec.SecurityContext = &corev1.PodSecurityContext{}
	want.Spec.EnableServiceLinks = ptr(true)

	defaultPod(in)
	if !equality.Semantic.DeepEqual(in, want) {
		t.Fatalf("defaulted pod differs (-want +got):\n%s", diff.Diff(want, in))
	}
}

func TestDefaultPodTemplateSkipsPodOnlyDefaults(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Image: "x",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
	}}}}
	DefaultPodTemplateSpec(tmpl)
	if tmpl.Spec.EnableServiceLinks != nil {
		t.Errorf("enableServiceLinks defaulted on a template")
	}
	if tmpl.Spec.Containers[0].Resources.Requests != nil {
		t.Errorf("requests defaulted from limits on a template")
	}
	if tmpl.Spec.RestartPolicy != corev1.RestartPolicyAlways || tmpl.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("spec defaults missing: %+v", tmpl.Spec)
	}
}

func TestDefaultHostNetworkPorts(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{
		Name: "c", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}}}
	defaultPod(p)
	if got := p.Spec.Containers[0].Ports[0].HostPort; got != 8080 {
		t.Errorf("hostPort = %d, want 8080", got)
	}
}

func TestDefaultService(t *testing.T) {
	in := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{{Port: 80}, {Port: 443, TargetPort: intstr.FromString("https")}}}}
	defaultService(in)
	s := in.Spec
	if s.SessionAffinity != corev1.ServiceAffinityNone || s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster ||
		s.InternalTrafficPolicy == nil || *s.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
		t.Errorf("service defaults wrong: %+v", s)
	}
	if s.Ports[0].Protocol != corev1.ProtocolTCP || s.Ports[0].TargetPort != intstr.FromInt32(80) {
		t.Errorf("port 0 defaults wrong: %+v", s.Ports[0])
	}
	if s.Ports[1].TargetPort != intstr.FromString("https") {
		t.Errorf("named targetPort overwritten: %+v", s.Ports[1])
	}
	cip := &corev1.Service{}
	defaultService(cip)
	if cip.Spec.Type != corev1.ServiceTypeClusterIP || cip.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("ClusterIP defaults wrong: %+v", cip.Spec)
	}
}

func TestDefaultReplicationController(t *testing.T) {
	rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{
		ObjectMeta: objectMetaLabels(map[string]string{"app": "a"}),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
	defaultReplicationController(rc)
	if *rc.Spec.Replicas != 1 || rc.Spec.Selector["app"] != "a" || rc.Labels["app"] != "a" {
		t.Errorf("rc defaults wrong: %+v", rc)
	}
	if rc.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("template not defaulted")
	}
}
