package core

import (
	"fmt"
	"math"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

// ValidatePodTemplateSpec validates a pod template (labels, annotations and
// spec) rooted at fldPath (e.g. spec.template).
func ValidatePodTemplateSpec(t *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	if t == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, fldPath.Child("metadata", "labels"))...)
	errs = append(errs, ValidatePodSpec(&t.Spec, fldPath.Child("spec"))...)
	return errs
}

var (
	supportedRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}
	supportedDNSPolicies     = []corev1.DNSPolicy{corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSNone}
	supportedPullPolicies    = []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}
	supportedTermMsgPolicies = []corev1.TerminationMessagePolicy{corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError}
	supportedURISchemes      = []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}
	supportedTolerationOps   = []corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}
	supportedTaintEffects    = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}
	supportedFieldRefPaths   = sets.New("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
		"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
	supportedResourceFieldRefs = sets.New("limits.cpu", "limits.memory", "limits.ephemeral-storage",
		"requests.cpu", "requests.memory", "requests.ephemeral-storage")
)

const fileModeErrorMsg = "must be a number between 0 and 0777 (octal), both inclusive"

// ValidatePodSpec validates a pod spec rooted at fldPath. It holds the
// rules shared by pods and pod templates; rules that only apply to pods
// (image whitespace) are in validatePod.
func ValidatePodSpec(s *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	if s == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var errs field.ErrorList
	volumes, vErrs := validateVolumes(s.Volumes, fldPath.Child("volumes"))
	errs = append(errs, vErrs...)

	names := sets.New[string]()
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(fldPath.Child("containers"), ""))
	}
	for i := range s.InitContainers {
		p := fldPath.Child("initContainers").Index(i)
		c := &s.InitContainers[i]
		errs = append(errs, validateContainer(c, volumes, names, s.HostNetwork, p)...)
		if c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			errs = append(errs, field.NotSupported(p.Child("restartPolicy"), *c.RestartPolicy, []string{string(corev1.ContainerRestartPolicyAlways)}))
		}
		if c.RestartPolicy == nil {
			forbid := func(name string) {
				errs = append(errs, field.Forbidden(p.Child(name), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.Lifecycle != nil {
				forbid("lifecycle")
			}
			if c.LivenessProbe != nil {
				forbid("livenessProbe")
			}
			if c.ReadinessProbe != nil {
				forbid("readinessProbe")
			}
			if c.StartupProbe != nil {
				forbid("startupProbe")
			}
		}
	}
	for i := range s.Containers {
		p := fldPath.Child("containers").Index(i)
		c := &s.Containers[i]
		errs = append(errs, validateContainer(c, volumes, names, s.HostNetwork, p)...)
		if c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			// Per-container restart rules are alpha upstream; only the
			// sidecar form is accepted here.
			errs = append(errs, field.Forbidden(p.Child("restartPolicy"), "may not be set for non-init containers"))
		}
	}
	for i := range s.EphemeralContainers {
		p := fldPath.Child("ephemeralContainers").Index(i)
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		errs = append(errs, validateContainer(&c, volumes, names, s.HostNetwork, p)...)
	}

	errs = append(errs, oneOf(s.RestartPolicy, supportedRestartPolicies, fldPath.Child("restartPolicy"))...)
	errs = append(errs, oneOf(s.DNSPolicy, supportedDNSPolicies, fldPath.Child("dnsPolicy"))...)
	if s.DNSPolicy == corev1.DNSNone && s.DNSConfig == nil {
		errs = append(errs, field.Required(fldPath.Child("dnsConfig"), fmt.Sprintf("must provide `dnsConfig` when `dnsPolicy` is %s", corev1.DNSNone)))
	}
	if s.DNSConfig != nil {
		errs = append(errs, validateDNSConfig(s.DNSConfig, fldPath.Child("dnsConfig"))...)
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, fldPath.Child("nodeSelector"))...)
	if s.ServiceAccountName != "" {
		errs = append(errs, dns1123Subdomain(s.ServiceAccountName, fldPath.Child("serviceAccountName"))...)
	}
	if s.NodeName != "" {
		errs = append(errs, dns1123Subdomain(s.NodeName, fldPath.Child("nodeName"))...)
	}
	if s.ActiveDeadlineSeconds != nil {
		v := *s.ActiveDeadlineSeconds
		if v < 1 || v > math.MaxInt32 {
			errs = append(errs, field.Invalid(fldPath.Child("activeDeadlineSeconds"), v, validation.InclusiveRangeError(1, math.MaxInt32)))
		}
	}
	if s.Hostname != "" {
		errs = append(errs, dns1123Label(s.Hostname, fldPath.Child("hostname"))...)
	}
	if s.Subdomain != "" {
		errs = append(errs, dns1123Label(s.Subdomain, fldPath.Child("subdomain"))...)
	}
	for i, ref := range s.ImagePullSecrets {
		if ref.Name == "" {
			errs = append(errs, field.Required(fldPath.Child("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	errs = append(errs, validateTolerations(s.Tolerations, fldPath.Child("tolerations"))...)
	if s.SecurityContext != nil {
		errs = append(errs, validatePodSecurityContext(s.SecurityContext, fldPath.Child("securityContext"))...)
	}
	gates := sets.New[string]()
	for i, g := range s.SchedulingGates {
		p := fldPath.Child("schedulingGates").Index(i).Child("name")
		errs = append(errs, invalidMsgs(p, g.Name, validation.IsQualifiedName(g.Name))...)
		if gates.Has(g.Name) {
			errs = append(errs, field.Duplicate(p, g.Name))
		}
		gates.Insert(g.Name)
	}
	if s.Resources != nil {
		errs = append(errs, validateResourceRequirements(s.Resources, fldPath.Child("resources"))...)
	}
	return errs
}

func validateDNSConfig(c *corev1.PodDNSConfig, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(c.Nameservers) > 3 {
		errs = append(errs, field.Invalid(fldPath.Child("nameservers"), c.Nameservers, "must not have more than 3 nameservers"))
	}
	if len(c.Searches) > 32 {
		errs = append(errs, field.Invalid(fldPath.Child("searches"), c.Searches, "must not have more than 32 search paths"))
	}
	for i, o := range c.Options {
		if o.Name == "" {
			errs = append(errs, field.Required(fldPath.Child("options").Index(i), "Option.Name must not be empty"))
		}
	}
	return errs
}

func validatePodSecurityContext(sc *corev1.PodSecurityContext, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sc.RunAsUser != nil {
		errs = append(errs, invalidMsgs(fldPath.Child("runAsUser"), *sc.RunAsUser, validation.IsValidUserID(*sc.RunAsUser))...)
	}
	if sc.RunAsGroup != nil {
		errs = append(errs, invalidMsgs(fldPath.Child("runAsGroup"), *sc.RunAsGroup, validation.IsValidGroupID(*sc.RunAsGroup))...)
	}
	if sc.FSGroup != nil {
		errs = append(errs, invalidMsgs(fldPath.Child("fsGroup"), *sc.FSGroup, validation.IsValidGroupID(*sc.FSGroup))...)
	}
	for i, g := range sc.SupplementalGroups {
		errs = append(errs, invalidMsgs(fldPath.Child("supplementalGroups").Index(i), g, validation.IsValidGroupID(g))...)
	}
	return errs
}

func validateTolerations(ts []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range ts {
		if tolerationValid(&ts[i]) {
			continue
		}
		errs = append(errs, tolerationErrors(ts[i], fldPath.Index(i))...)
	}
	return errs
}

// tolerationErrors is every problem with the toleration t at p.
func tolerationErrors(t corev1.Toleration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if t.Key != "" {
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, p.Child("key"))...)
	}
	if t.Key == "" && t.Operator != corev1.TolerationOpExists {
		errs = append(errs, field.Invalid(p.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
	}
	if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
		errs = append(errs, field.Invalid(p.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
	}
	switch t.Operator {
	case corev1.TolerationOpEqual, "":
		errs = append(errs, invalidMsgs(p.Child("value"), t.Value, validation.IsValidLabelValue(t.Value))...)
	case corev1.TolerationOpExists:
		if t.Value != "" {
			errs = append(errs, field.Invalid(p.Child("operator"), t, "value must be empty when `operator` is 'Exists'"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("operator"), t.Operator, []string{string(corev1.TolerationOpEqual), string(corev1.TolerationOpExists)}))
	}
	if t.Effect != "" {
		errs = append(errs, oneOf(t.Effect, supportedTaintEffects, p.Child("effect"))...)
	}
	return errs
}

// tolerationValid reports whether tolerationErrors finds nothing wrong
// with t, without building field paths and with memos of the keys and
// values it accepted: every pod carries at least the two default
// tolerations, whose keys were checked by regular expression on every
// create and spec update. false means "run the checks" (which report the
// errors); TestTolerationValidMatchesChecks holds it to them.
func tolerationValid(t *corev1.Toleration) bool {
	if t.Key == "" {
		if t.Operator != corev1.TolerationOpExists {
			return false
		}
	} else if !registry.LabelKeys.Valid(t.Key) {
		return false
	}
	if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
		return false
	}
	switch t.Operator {
	case corev1.TolerationOpEqual, "":
		if !registry.LabelValues.Valid(t.Value) {
			return false
		}
	case corev1.TolerationOpExists:
		if t.Value != "" {
			return false
		}
	default:
		return false
	}
	switch t.Effect {
	case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		return true
	}
	return false
}

func validateContainer(c *corev1.Container, volumes map[string]*corev1.Volume, names sets.Set[string], hostNetwork bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	namePath := p.Child("name")
	if c.Name == "" {
		errs = append(errs, field.Required(namePath, ""))
	} else {
		errs = append(errs, invalidMsgs(namePath, c.Name, validation.IsDNS1123Label(c.Name))...)
		if names.Has(c.Name) {
			errs = append(errs, field.Duplicate(namePath, c.Name))
		}
		names.Insert(c.Name)
	}
	if c.Image == "" {
		errs = append(errs, field.Required(p.Child("image"), ""))
	}
	if c.ImagePullPolicy != "" {
		errs = append(errs, oneOf(c.ImagePullPolicy, supportedPullPolicies, p.Child("imagePullPolicy"))...)
	}
	if c.TerminationMessagePolicy != "" {
		errs = append(errs, oneOf(c.TerminationMessagePolicy, supportedTermMsgPolicies, p.Child("terminationMessagePolicy"))...)
	}
	errs = append(errs, validateContainerPorts(c.Ports, hostNetwork, p.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, p.Child("env"))...)
	errs = append(errs, validateEnvFrom(c.EnvFrom, p.Child("envFrom"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, p.Child("volumeMounts"))...)
	errs = append(errs, validateProbe(c.LivenessProbe, true, p.Child("livenessProbe"))...)
	errs = append(errs, validateProbe(c.StartupProbe, true, p.Child("startupProbe"))...)
	errs = append(errs, validateProbe(c.ReadinessProbe, false, p.Child("readinessProbe"))...)
	if c.ReadinessProbe != nil && c.ReadinessProbe.TerminationGracePeriodSeconds != nil {
		errs = append(errs, field.Invalid(p.Child("readinessProbe", "terminationGracePeriodSeconds"), *c.ReadinessProbe.TerminationGracePeriodSeconds, "must not be set for readinessProbes"))
	}
	if c.Lifecycle != nil {
		errs = append(errs, validateLifecycleHandler(c.Lifecycle.PostStart, p.Child("lifecycle", "postStart"))...)
		errs = append(errs, validateLifecycleHandler(c.Lifecycle.PreStop, p.Child("lifecycle", "preStop"))...)
	}
	errs = append(errs, validateResourceRequirements(&c.Resources, p.Child("resources"))...)
	return errs
}

func validateContainerPorts(ports []corev1.ContainerPort, hostNetwork bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, port := range ports {
		p := fldPath.Index(i)
		if port.Name != "" {
			errs = append(errs, invalidMsgs(p.Child("name"), port.Name, validation.IsValidPortName(port.Name))...)
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(p.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(p.Child("containerPort"), ""))
		} else {
			errs = append(errs, portNum(port.ContainerPort, p.Child("containerPort"))...)
		}
		if port.HostPort != 0 {
			errs = append(errs, portNum(port.HostPort, p.Child("hostPort"))...)
		}
		if hostNetwork && port.HostPort != 0 && port.HostPort != port.ContainerPort {
			errs = append(errs, field.Invalid(p.Child("hostPort"), port.HostPort, "must match `containerPort` when `hostNetwork` is true"))
		}
		errs = append(errs, portProtocol(port.Protocol, p.Child("protocol"))...)
	}
	return errs
}

func validateEnv(env []corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ev := range env {
		p := fldPath.Index(i)
		if ev.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else {
			errs = append(errs, invalidMsgs(p.Child("name"), ev.Name, validation.IsRelaxedEnvVarName(ev.Name))...)
		}
		if ev.ValueFrom == nil {
			continue
		}
		vp := p.Child("valueFrom")
		set := setPointerFields(ev.ValueFrom)
		switch {
		case len(set) == 0:
			errs = append(errs, field.Invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
		case len(set) > 1:
			errs = append(errs, field.Invalid(vp, "", "may not have more than one field specified at a time"))
		}
		if ev.Value != "" && len(set) > 0 {
			errs = append(errs, field.Invalid(vp, "", "may not be specified when `value` is not empty"))
		}
		vf := ev.ValueFrom
		if vf.FieldRef != nil {
			fp := vp.Child("fieldRef")
			if vf.FieldRef.FieldPath == "" {
				errs = append(errs, field.Required(fp.Child("fieldPath"), ""))
			} else if !supportedFieldRefPaths.Has(vf.FieldRef.FieldPath) && !isLabelOrAnnotationRef(vf.FieldRef.FieldPath) {
				errs = append(errs, field.NotSupported(fp.Child("fieldPath"), vf.FieldRef.FieldPath, append(sets.List(supportedFieldRefPaths), "metadata.annotations", "metadata.labels")))
			}
		}
		if vf.ResourceFieldRef != nil {
			rp := vp.Child("resourceFieldRef", "resource")
			if vf.ResourceFieldRef.Resource == "" {
				errs = append(errs, field.Required(rp, ""))
			} else if !supportedResourceFieldRefs.Has(vf.ResourceFieldRef.Resource) &&
				!strings.HasPrefix(vf.ResourceFieldRef.Resource, "limits.hugepages-") && !strings.HasPrefix(vf.ResourceFieldRef.Resource, "requests.hugepages-") {
				errs = append(errs, field.NotSupported(rp, vf.ResourceFieldRef.Resource, sets.List(supportedResourceFieldRefs)))
			}
		}
		if vf.ConfigMapKeyRef != nil {
			kp := vp.Child("configMapKeyRef")
			errs = append(errs, validateKeyRef(vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, kp)...)
		}
		if vf.SecretKeyRef != nil {
			kp := vp.Child("secretKeyRef")
			errs = append(errs, validateKeyRef(vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, kp)...)
		}
	}
	return errs
}

func isLabelOrAnnotationRef(p string) bool {
	return strings.HasPrefix(p, "metadata.labels['") || strings.HasPrefix(p, "metadata.annotations['") ||
		p == "metadata.labels" || p == "metadata.annotations"
}

func validateKeyRef(name, key string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	} else {
		errs = append(errs, dns1123Subdomain(name, fldPath.Child("name"))...)
	}
	if key == "" {
		errs = append(errs, field.Required(fldPath.Child("key"), ""))
	} else {
		errs = append(errs, invalidMsgs(fldPath.Child("key"), key, validation.IsConfigMapKey(key))...)
	}
	return errs
}

func validateEnvFrom(from []corev1.EnvFromSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ef := range from {
		p := fldPath.Index(i)
		if ef.Prefix != "" {
			errs = append(errs, invalidMsgs(p.Child("prefix"), ef.Prefix, validation.IsRelaxedEnvVarName(ef.Prefix))...)
		}
		n := 0
		if ef.ConfigMapRef != nil {
			n++
			errs = append(errs, dns1123Subdomain(ef.ConfigMapRef.Name, p.Child("configMapRef", "name"))...)
		}
		if ef.SecretRef != nil {
			n++
			errs = append(errs, dns1123Subdomain(ef.SecretRef.Name, p.Child("secretRef", "name"))...)
		}
		if n == 0 {
			errs = append(errs, field.Invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
		} else if n > 1 {
			errs = append(errs, field.Invalid(p, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func validateVolumeMounts(mounts []corev1.VolumeMount, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		p := fldPath.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else if _, ok := volumes[m.Name]; !ok {
			errs = append(errs, field.NotFound(p.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(p.Child("mountPath"), ""))
		} else {
			if paths.Has(m.MountPath) {
				errs = append(errs, field.Invalid(p.Child("mountPath"), m.MountPath, "must be unique"))
			}
			paths.Insert(m.MountPath)
		}
		if m.SubPath != "" {
			errs = append(errs, validateLocalDescendingPath(m.SubPath, p.Child("subPath"))...)
		}
		if m.SubPath != "" && m.SubPathExpr != "" {
			errs = append(errs, field.Invalid(p.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
		}
		if m.MountPropagation != nil {
			allowed := []corev1.MountPropagationMode{corev1.MountPropagationNone, corev1.MountPropagationHostToContainer, corev1.MountPropagationBidirectional}
			errs = append(errs, oneOf(*m.MountPropagation, allowed, p.Child("mountPropagation"))...)
		}
	}
	return errs
}

func validateProbe(pr *corev1.Probe, successMustBeOne bool, fldPath *field.Path) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, validateProbeHandler(&pr.ProbeHandler, fldPath)...)
	errs = append(errs, nonNegative(int64(pr.InitialDelaySeconds), fldPath.Child("initialDelaySeconds"))...)
	errs = append(errs, nonNegative(int64(pr.TimeoutSeconds), fldPath.Child("timeoutSeconds"))...)
	errs = append(errs, nonNegative(int64(pr.PeriodSeconds), fldPath.Child("periodSeconds"))...)
	errs = append(errs, nonNegative(int64(pr.SuccessThreshold), fldPath.Child("successThreshold"))...)
	errs = append(errs, nonNegative(int64(pr.FailureThreshold), fldPath.Child("failureThreshold"))...)
	if successMustBeOne && pr.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(fldPath.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	if pr.TerminationGracePeriodSeconds != nil && *pr.TerminationGracePeriodSeconds <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *pr.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	return errs
}

func validateProbeHandler(h *corev1.ProbeHandler, fldPath *field.Path) field.ErrorList {
	set := setPointerFields(h)
	var errs field.ErrorList
	if len(set) == 0 {
		return field.ErrorList{field.Required(fldPath, "must specify a handler type")}
	}
	for _, extra := range set[1:] {
		errs = append(errs, field.Forbidden(fldPath.Child(extra), "may not specify more than 1 handler type"))
	}
	if h.Exec != nil && len(h.Exec.Command) == 0 {
		errs = append(errs, field.Required(fldPath.Child("exec", "command"), ""))
	}
	errs = append(errs, validateHTTPGet(h.HTTPGet, fldPath.Child("httpGet"))...)
	if h.TCPSocket != nil {
		errs = append(errs, portNumOrName(h.TCPSocket.Port, fldPath.Child("tcpSocket", "port"))...)
	}
	if h.GRPC != nil {
		errs = append(errs, portNum(h.GRPC.Port, fldPath.Child("grpc", "port"))...)
	}
	return errs
}

func validateHTTPGet(h *corev1.HTTPGetAction, fldPath *field.Path) field.ErrorList {
	if h == nil {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, portNumOrName(h.Port, fldPath.Child("port"))...)
	errs = append(errs, oneOf(h.Scheme, supportedURISchemes, fldPath.Child("scheme"))...)
	for i, hd := range h.HTTPHeaders {
		errs = append(errs, invalidMsgs(fldPath.Child("httpHeaders").Index(i).Child("name"), hd.Name, validation.IsHTTPHeaderName(hd.Name))...)
	}
	return errs
}

func validateLifecycleHandler(h *corev1.LifecycleHandler, fldPath *field.Path) field.ErrorList {
	if h == nil {
		return nil
	}
	set := setPointerFields(h)
	if len(set) == 0 {
		return field.ErrorList{field.Required(fldPath, "must specify a handler type")}
	}
	var errs field.ErrorList
	for _, extra := range set[1:] {
		errs = append(errs, field.Forbidden(fldPath.Child(extra), "may not specify more than 1 handler type"))
	}
	if h.Exec != nil && len(h.Exec.Command) == 0 {
		errs = append(errs, field.Required(fldPath.Child("exec", "command"), ""))
	}
	errs = append(errs, validateHTTPGet(h.HTTPGet, fldPath.Child("httpGet"))...)
	if h.TCPSocket != nil {
		errs = append(errs, portNumOrName(h.TCPSocket.Port, fldPath.Child("tcpSocket", "port"))...)
	}
	if h.Sleep != nil {
		errs = append(errs, nonNegative(h.Sleep.Seconds, fldPath.Child("sleep", "seconds"))...)
	}
	return errs
}

// validateVolumes checks names are unique DNS labels and each volume has
// exactly one source; it returns the volumes by name for mount checks.
func validateVolumes(vols []corev1.Volume, fldPath *field.Path) (map[string]*corev1.Volume, field.ErrorList) {
	var errs field.ErrorList
	byName := map[string]*corev1.Volume{}
	for i := range vols {
		v := &vols[i]
		p := fldPath.Index(i)
		namePath := p.Child("name")
		if v.Name == "" {
			errs = append(errs, field.Required(namePath, ""))
		} else {
			errs = append(errs, invalidMsgs(namePath, v.Name, validation.IsDNS1123Label(v.Name))...)
			if _, dup := byName[v.Name]; dup {
				errs = append(errs, field.Duplicate(namePath, v.Name))
			} else {
				byName[v.Name] = v
			}
		}
		errs = append(errs, validateVolumeSource(&v.VolumeSource, p)...)
	}
	return byName, errs
}

func validateMode(mode *int32, fldPath *field.Path) field.ErrorList {
	if mode != nil && (*mode < 0 || *mode > 0o777) {
		return field.ErrorList{field.Invalid(fldPath, *mode, fileModeErrorMsg)}
	}
	return nil
}

func validateKeyToPaths(items []corev1.KeyToPath, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		p := fldPath.Index(i)
		if it.Key == "" {
			errs = append(errs, field.Required(p.Child("key"), ""))
		}
		if it.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		} else {
			errs = append(errs, validateLocalNonReservedPath(it.Path, p.Child("path"))...)
		}
		errs = append(errs, validateMode(it.Mode, p.Child("mode"))...)
	}
	return errs
}

func validateVolumeSource(vs *corev1.VolumeSource, p *field.Path) field.ErrorList {
	set := setPointerFields(vs)
	if len(set) == 0 {
		return field.ErrorList{field.Required(p, "must specify a volume type")}
	}
	var errs field.ErrorList
	for _, extra := range set[1:] {
		errs = append(errs, field.Forbidden(p.Child(extra), "may not specify more than 1 volume type"))
	}
	switch {
	case vs.HostPath != nil:
		hp := p.Child("hostPath")
		if vs.HostPath.Path == "" {
			errs = append(errs, field.Required(hp.Child("path"), ""))
		} else if strings.Contains(path.Clean(vs.HostPath.Path), "..") {
			errs = append(errs, field.Invalid(hp.Child("path"), vs.HostPath.Path, "must not contain '..'"))
		}
		if t := vs.HostPath.Type; t != nil {
			allowed := []corev1.HostPathType{corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
				corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}
			if *t != "" {
				errs = append(errs, oneOf(*t, allowed, hp.Child("type"))...)
			}
		}
	case vs.EmptyDir != nil:
		if vs.EmptyDir.SizeLimit != nil {
			errs = append(errs, nonNegativeQuantity(*vs.EmptyDir.SizeLimit, p.Child("emptyDir", "sizeLimit"))...)
		}
	case vs.Secret != nil:
		sp := p.Child("secret")
		if vs.Secret.SecretName == "" {
			errs = append(errs, field.Required(sp.Child("secretName"), ""))
		}
		errs = append(errs, validateMode(vs.Secret.DefaultMode, sp.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(vs.Secret.Items, sp.Child("items"))...)
	case vs.ConfigMap != nil:
		cp := p.Child("configMap")
		if vs.ConfigMap.Name == "" {
			errs = append(errs, field.Required(cp.Child("name"), ""))
		}
		errs = append(errs, validateMode(vs.ConfigMap.DefaultMode, cp.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(vs.ConfigMap.Items, cp.Child("items"))...)
	case vs.PersistentVolumeClaim != nil:
		if vs.PersistentVolumeClaim.ClaimName == "" {
			errs = append(errs, field.Required(p.Child("persistentVolumeClaim", "claimName"), ""))
		}
	case vs.DownwardAPI != nil:
		dp := p.Child("downwardAPI")
		errs = append(errs, validateMode(vs.DownwardAPI.DefaultMode, dp.Child("defaultMode"))...)
		for i, it := range vs.DownwardAPI.Items {
			ip := dp.Child("items").Index(i)
			if it.Path == "" {
				errs = append(errs, field.Required(ip.Child("path"), ""))
			}
			errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
		}
	case vs.Projected != nil:
		pp := p.Child("projected")
		errs = append(errs, validateMode(vs.Projected.DefaultMode, pp.Child("defaultMode"))...)
		for i := range vs.Projected.Sources {
			src := &vs.Projected.Sources[i]
			sp := pp.Child("sources").Index(i)
			n := len(setPointerFields(src))
			if n != 1 {
				errs = append(errs, field.Forbidden(sp, "may not specify more than 1 volume type per source"))
			}
			if src.ServiceAccountToken != nil {
				tp := sp.Child("serviceAccountToken")
				if src.ServiceAccountToken.Path == "" {
					errs = append(errs, field.Required(tp.Child("path"), ""))
				}
				if e := src.ServiceAccountToken.ExpirationSeconds; e != nil && *e < 600 {
					errs = append(errs, field.Invalid(tp.Child("expirationSeconds"), *e, "may not specify a duration less than 10 minutes"))
				}
			}
			if src.ConfigMap != nil {
				errs = append(errs, validateKeyToPaths(src.ConfigMap.Items, sp.Child("configMap", "items"))...)
			}
			if src.Secret != nil {
				errs = append(errs, validateKeyToPaths(src.Secret.Items, sp.Child("secret", "items"))...)
			}
		}
	case vs.NFS != nil:
		np := p.Child("nfs")
		if vs.NFS.Server == "" {
			errs = append(errs, field.Required(np.Child("server"), ""))
		}
		if vs.NFS.Path == "" {
			errs = append(errs, field.Required(np.Child("path"), ""))
		} else if !path.IsAbs(vs.NFS.Path) {
			errs = append(errs, field.Invalid(np.Child("path"), vs.NFS.Path, "must be an absolute path"))
		}
	case vs.CSI != nil:
		if vs.CSI.Driver == "" {
			errs = append(errs, field.Required(p.Child("csi", "driver"), ""))
		}
	case vs.Image != nil:
		if vs.Image.Reference == "" {
			errs = append(errs, field.Required(p.Child("image", "reference"), ""))
		}
	}
	return errs
}

// validatePod adds the pod-only rules to ValidatePodSpec.
func validatePod(pod *corev1.Pod) field.ErrorList {
	specPath := field.NewPath("spec")
	errs := ValidatePodSpec(&pod.Spec, specPath)
	errs = append(errs, validateImagesOnlyForPod(pod.Spec.InitContainers, specPath.Child("initContainers"))...)
	errs = append(errs, validateImagesOnlyForPod(pod.Spec.Containers, specPath.Child("containers"))...)
	return errs
}

func validateImagesOnlyForPod(cs []corev1.Container, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, c := range cs {
		if c.Image != strings.TrimSpace(c.Image) {
			errs = append(errs, field.Invalid(fldPath.Index(i).Child("image"), c.Image, "must not have leading or trailing whitespace"))
		}
	}
	return errs
}

const podUpdateForbiddenMsg = "pod updates may not change fields other than `spec.containers[*].image`," +
	"`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)," +
	"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"

// validatePodUpdate enforces pod spec immutability: only images,
// activeDeadlineSeconds (decrease), added tolerations, scheduling gate
// removal and the negative-grace-period fixup may change.
func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	specPath := field.NewPath("spec")
	var errs field.ErrorList
	if len(pod.Spec.Containers) != len(old.Spec.Containers) {
		return field.ErrorList{field.Forbidden(specPath.Child("containers"), "pod updates may not add or remove containers")}
	}
	if len(pod.Spec.InitContainers) != len(old.Spec.InitContainers) {
		return field.ErrorList{field.Forbidden(specPath.Child("initContainers"), "pod updates may not add or remove containers")}
	}
	if old.Spec.ActiveDeadlineSeconds != nil {
		adsPath := specPath.Child("activeDeadlineSeconds")
		if pod.Spec.ActiveDeadlineSeconds == nil {
			errs = append(errs, field.Invalid(adsPath, pod.Spec.ActiveDeadlineSeconds, "must not update from a positive integer to nil value"))
		} else if *pod.Spec.ActiveDeadlineSeconds > *old.Spec.ActiveDeadlineSeconds {
			errs = append(errs, field.Invalid(adsPath, *pod.Spec.ActiveDeadlineSeconds, "must be less than or equal to previous value"))
		}
	}
	errs = append(errs, validateOnlyAddedTolerations(pod.Spec.Tolerations, old.Spec.Tolerations, specPath.Child("tolerations"))...)
	for i, g := range pod.Spec.SchedulingGates {
		found := false
		for _, og := range old.Spec.SchedulingGates {
			found = found || og.Name == g.Name
		}
		if !found {
			errs = append(errs, field.Forbidden(specPath.Child("schedulingGates").Index(i), "only deletion is allowed, but found new scheduling gate '"+g.Name+"'"))
		}
	}

	// Reset every field that may change to its old value; anything left
	// different is a forbidden change.
	munged := pod.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = old.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = old.Spec.InitContainers[i].Image
	}
	munged.ActiveDeadlineSeconds = old.Spec.ActiveDeadlineSeconds
	munged.Tolerations = old.Spec.Tolerations
	munged.SchedulingGates = old.Spec.SchedulingGates
	// Ephemeral containers change only through their subresource.
	munged.EphemeralContainers = old.Spec.EphemeralContainers
	if old.Spec.TerminationGracePeriodSeconds != nil && *old.Spec.TerminationGracePeriodSeconds < 0 &&
		munged.TerminationGracePeriodSeconds != nil && *munged.TerminationGracePeriodSeconds == 1 {
		munged.TerminationGracePeriodSeconds = old.Spec.TerminationGracePeriodSeconds
	}
	if len(old.Spec.SchedulingGates) > 0 {
		// While gated, node selectors and affinity may be tightened; only
		// additions to nodeSelector are accepted here.
		if nodeSelectorOnlyAdds(munged.NodeSelector, old.Spec.NodeSelector) {
			munged.NodeSelector = old.Spec.NodeSelector
		}
	}
	if !equality.Semantic.DeepEqual(*munged, old.Spec) {
		errs = append(errs, field.Forbidden(specPath, podUpdateForbiddenMsg+"\n"+diff.Diff(old.Spec, *munged)))
	}
	return errs
}

func nodeSelectorOnlyAdds(n, o map[string]string) bool {
	for k, v := range o {
		if nv, ok := n[k]; !ok || nv != v {
			return false
		}
	}
	return true
}

// validateOnlyAddedTolerations: every old toleration must still be there;
// a NoExecute toleration may only shorten its tolerationSeconds.
func validateOnlyAddedTolerations(newTs, oldTs []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, o := range oldTs {
		found := false
		for _, n := range newTs {
			oc, nc := o, n
			oc.TolerationSeconds, nc.TolerationSeconds = nil, nil
			if !equality.Semantic.DeepEqual(oc, nc) {
				continue
			}
			if o.TolerationSeconds == nil && n.TolerationSeconds == nil ||
				o.TolerationSeconds != nil && n.TolerationSeconds != nil && *n.TolerationSeconds <= *o.TolerationSeconds {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, field.Forbidden(fldPath.Index(i), "existing toleration can not be modified except its tolerationSeconds"))
		}
	}
	return append(errs, validateTolerations(newTs, fldPath)...)
}

func isTerminalPhase(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}

// validatePodStatusUpdate checks a write to pods/status.
func validatePodStatusUpdate(pod, old *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	statusPath := field.NewPath("status")
	if isTerminalPhase(old.Status.Phase) && pod.Status.Phase != old.Status.Phase {
		errs = append(errs, field.Forbidden(statusPath.Child("phase"), "may not transition from terminal to non-terminal pod phases"))
	}
	if pod.Status.NominatedNodeName != "" {
		errs = append(errs, dns1123Subdomain(pod.Status.NominatedNodeName, statusPath.Child("nominatedNodeName"))...)
	}
	for i, ip := range pod.Status.PodIPs {
		errs = append(errs, validation.IsValidIP(statusPath.Child("podIPs").Index(i).Child("ip"), ip.IP)...)
	}
	if len(pod.Status.PodIPs) > 0 && pod.Status.PodIP != pod.Status.PodIPs[0].IP {
		errs = append(errs, field.Invalid(statusPath.Child("podIP"), pod.Status.PodIP, "must match status.podIPs[0].ip"))
	}
	for i, c := range pod.Status.Conditions {
		if c.Type == "" {
			errs = append(errs, field.Required(statusPath.Child("conditions").Index(i).Child("type"), ""))
		}
	}
	errs = append(errs, validateContainerStatusNames(pod.Status.ContainerStatuses, pod.Spec.Containers, statusPath.Child("containerStatuses"))...)
	errs = append(errs, validateContainerStatusNames(pod.Status.InitContainerStatuses, pod.Spec.InitContainers, statusPath.Child("initContainerStatuses"))...)
	return errs
}

func validateContainerStatusNames(sts []corev1.ContainerStatus, cs []corev1.Container, fldPath *field.Path) field.ErrorList {
	names := sets.New[string]()
	for _, c := range cs {
		names.Insert(c.Name)
	}
	var errs field.ErrorList
	for i, st := range sts {
		if !names.Has(st.Name) {
			errs = append(errs, field.NotFound(fldPath.Index(i).Child("name"), st.Name))
		}
	}
	return errs
}
