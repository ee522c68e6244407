package core

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validPod() *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "web", Image: "nginx:1.25",
				Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
				},
			}},
			Volumes: []corev1.Volume{{Name: "data"}},
		},
	}
	defaultPod(p)
	return p
}

func TestValidatePod(t *testing.T) {
	spec := "spec"
	c0 := spec + ".containers[0]"
	cases := []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   []wantErr
	}{
		{"valid", func(p *corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil; p.Spec.Volumes = nil },
			[]wantErr{{field.ErrorTypeRequired, spec + ".containers"}}},
		{"bad container name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "Web_1" },
			[]wantErr{{field.ErrorTypeInvalid, c0 + ".name"}}},
		{"duplicate container name", func(p *corev1.Pod) {
			c := p.Spec.Containers[0]
			c.VolumeMounts = nil
			p.Spec.InitContainers = []corev1.Container{{Name: "web", Image: "x", ImagePullPolicy: "Always", TerminationMessagePolicy: "File"}}
		}, []wantErr{{field.ErrorTypeDuplicate, c0 + ".name"}}},
		{"image required", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" },
			[]wantErr{{field.ErrorTypeRequired, c0 + ".image"}}},
		{"image whitespace", func(p *corev1.Pod) { p.Spec.Containers[0].Image = " nginx" },
			[]wantErr{{field.ErrorTypeInvalid, c0 + ".image"}}},
		{"port out of range", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 },
			[]wantErr{{field.ErrorTypeInvalid, c0 + ".ports[0].containerPort"}}},
		{"bad protocol", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = "HTTP" },
			[]wantErr{{field.ErrorTypeNotSupported, c0 + ".ports[0].protocol"}}},
		{"requests above limits", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
		}, []wantErr{{field.ErrorTypeInvalid, c0 + ".resources.requests[cpu]"}}},
		{"bad restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" },
			[]wantErr{{field.ErrorTypeNotSupported, spec + ".restartPolicy"}}},
		{"bad dnsPolicy", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Cluster" },
			[]wantErr{{field.ErrorTypeNotSupported, spec + ".dnsPolicy"}}},
		{"duplicate volume", func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, p.Spec.Volumes[0]) },
			[]wantErr{{field.ErrorTypeDuplicate, spec + ".volumes[1].name"}}},
		{"two volume sources", func(p *corev1.Pod) {
			p.Spec.Volumes[0].HostPath = &corev1.HostPathVolumeSource{Path: "/x"}
		}, []wantErr{{field.ErrorTypeForbidden, spec + ".volumes[0].emptyDir"}}},
		{"mount of unknown volume", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "nope" },
			[]wantErr{{field.ErrorTypeNotFound, c0 + ".volumeMounts[0].name"}}},
		{"negative probe period", func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe.PeriodSeconds = -1 },
			[]wantErr{{field.ErrorTypeInvalid, c0 + ".readinessProbe.periodSeconds"}}},
		{"liveness success threshold", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{SuccessThreshold: 2, PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 1,
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
		}, []wantErr{{field.ErrorTypeInvalid, c0 + ".livenessProbe.successThreshold"}}},
		{"probe without handler", func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe.HTTPGet = nil },
			[]wantErr{{field.ErrorTypeRequired, c0 + ".readinessProbe"}}},
		{"bad env name", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "1=A"}} },
			[]wantErr{{field.ErrorTypeInvalid, c0 + ".env[0].name"}}},
		{"value and valueFrom", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "x", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}}}
		}, []wantErr{{field.ErrorTypeInvalid, c0 + ".env[0].valueFrom"}}},
		{"dnsPolicy None without config", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone },
			[]wantErr{{field.ErrorTypeRequired, spec + ".dnsConfig"}}},
		{"toleration seconds without NoExecute", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: "Exists", Effect: "NoSchedule", TolerationSeconds: ptr(int64(5))}}
		}, []wantErr{{field.ErrorTypeInvalid, spec + ".tolerations[0].effect"}}},
		{"activeDeadlineSeconds zero", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr(int64(0)) },
			[]wantErr{{field.ErrorTypeInvalid, spec + ".activeDeadlineSeconds"}}},
		{"extended resource without limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("1")
		}, []wantErr{{field.ErrorTypeRequired, c0 + ".resources.limits"}}},
	}
	for _, tc := range cases {
		p := validPod()
		tc.mutate(p)
		checkErrs(t, tc.name, validatePod(p), tc.want...)
	}
}

func TestValidatePodTemplateSpecPaths(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	DefaultPodTemplateSpec(tmpl)
	errs := ValidatePodTemplateSpec(tmpl, field.NewPath("spec", "template"))
	checkErrs(t, "template", errs, wantErr{field.ErrorTypeRequired, "spec.template.spec.containers[0].image"})
}

func TestValidatePodUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   []wantErr
	}{
		{"no change", func(p *corev1.Pod) {}, nil},
		{"image change", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.26" }, nil},
		{"add toleration", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "k", Operator: "Exists"})
		}, nil},
		{"remove toleration", func(p *corev1.Pod) { p.Spec.Tolerations = nil },
			[]wantErr{{field.ErrorTypeForbidden, "spec.tolerations[0]"}}},
		{"port change", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 81 },
			[]wantErr{{field.ErrorTypeForbidden, "spec"}}},
		{"add container", func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) },
			[]wantErr{{field.ErrorTypeForbidden, "spec.containers"}}},
		{"raise activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr(int64(200)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.activeDeadlineSeconds"}}},
		{"lower activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr(int64(50)) }, nil},
	}
	for _, tc := range cases {
		old := validPod()
		old.Spec.ActiveDeadlineSeconds = ptr(int64(100))
		old.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: "Exists"}}
		p := old.DeepCopy()
		tc.mutate(p)
		checkErrs(t, tc.name, validatePodUpdate(p, old), tc.want...)
	}
	old := validPod()
	p := old.DeepCopy()
	p.Spec.NodeName = "n1"
	errs := validatePodUpdate(p, old)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Detail, "pod updates may not change fields other than `spec.containers[*].image`") {
		t.Errorf("want the upstream forbidden message, got %v", errs)
	}
}

func TestValidatePodStatusUpdate(t *testing.T) {
	old := validPod()
	old.Status.Phase = corev1.PodSucceeded
	p := old.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	checkErrs(t, "terminal to running", validatePodStatusUpdate(p, old), wantErr{field.ErrorTypeForbidden, "status.phase"})
	p = old.DeepCopy()
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "other"}}
	checkErrs(t, "unknown container status", validatePodStatusUpdate(p, old), wantErr{field.ErrorTypeNotFound, "status.containerStatuses[0].name"})
}
