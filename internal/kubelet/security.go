package kubelet

import (
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// effectiveSecurity merges the pod's securityContext with the container's
// (the container's fields win), as upstream does.
func effectiveSecurity(pod *v1.Pod, c *v1.Container) v1.SecurityContext {
	var out v1.SecurityContext
	if psc := pod.Spec.SecurityContext; psc != nil {
		out.RunAsUser = psc.RunAsUser
		out.RunAsGroup = psc.RunAsGroup
		out.RunAsNonRoot = psc.RunAsNonRoot
		out.SeccompProfile = psc.SeccompProfile
		out.SELinuxOptions = psc.SELinuxOptions
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			out.RunAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			out.RunAsGroup = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			out.RunAsNonRoot = sc.RunAsNonRoot
		}
		if sc.SeccompProfile != nil {
			out.SeccompProfile = sc.SeccompProfile
		}
		if sc.SELinuxOptions != nil {
			out.SELinuxOptions = sc.SELinuxOptions
		}
		out.Privileged = sc.Privileged
		out.ReadOnlyRootFilesystem = sc.ReadOnlyRootFilesystem
		out.Capabilities = sc.Capabilities
		out.AllowPrivilegeEscalation = sc.AllowPrivilegeEscalation
	}
	return out
}

// containerSecurity is the CRI security context of container c.
func containerSecurity(pod *v1.Pod, c *v1.Container, ns *runtimeapi.NamespaceOption) *runtimeapi.LinuxContainerSecurityContext {
	sc := effectiveSecurity(pod, c)
	lsc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}
	if sc.Privileged != nil {
		lsc.Privileged = *sc.Privileged
	}
	if sc.RunAsUser != nil {
		lsc.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
	}
	if sc.RunAsGroup != nil {
		lsc.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
	}
	if sc.ReadOnlyRootFilesystem != nil {
		lsc.ReadonlyRootfs = *sc.ReadOnlyRootFilesystem
	}
	if sc.AllowPrivilegeEscalation != nil {
		lsc.NoNewPrivs = !*sc.AllowPrivilegeEscalation
	}
	if caps := sc.Capabilities; caps != nil {
		lsc.Capabilities = &runtimeapi.Capability{}
		for _, a := range caps.Add {
			lsc.Capabilities.AddCapabilities = append(lsc.Capabilities.AddCapabilities, string(a))
		}
		for _, d := range caps.Drop {
			lsc.Capabilities.DropCapabilities = append(lsc.Capabilities.DropCapabilities, string(d))
		}
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		lsc.SupplementalGroups = append(lsc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			lsc.SupplementalGroups = append(lsc.SupplementalGroups, *psc.FSGroup)
		}
	}
	lsc.Seccomp = seccompProfile(sc.SeccompProfile)
	if o := sc.SELinuxOptions; o != nil {
		lsc.SelinuxOptions = &runtimeapi.SELinuxOption{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
	}
	return lsc
}

func seccompProfile(p *v1.SeccompProfile) *runtimeapi.SecurityProfile {
	if p == nil {
		return nil
	}
	switch p.Type {
	case v1.SeccompProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case v1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile != nil {
			return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: *p.LocalhostProfile}
		}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
}

// checkNonRoot enforces runAsNonRoot against the effective user: the
// securityContext's runAsUser, else the image's user (uid, or a name the
// kubelet cannot verify, which upstream refuses too).
func checkNonRoot(pod *v1.Pod, c *v1.Container, imageUID *int64, imageUser string) error {
	sc := effectiveSecurity(pod, c)
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		return nil
	}
	if sc.RunAsUser != nil {
		if *sc.RunAsUser == 0 {
			return &envError{msg: "container's runAsUser breaks non-root policy"}
		}
		return nil
	}
	switch {
	case imageUID != nil && *imageUID == 0:
		return &envError{msg: "container has runAsNonRoot and image will run as root"}
	case imageUID == nil && imageUser != "":
		if _, err := strconv.Atoi(imageUser); err != nil {
			return &envError{msg: fmt.Sprintf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root", imageUser)}
		}
	case imageUID == nil:
		return &envError{msg: "container has runAsNonRoot and image will run as root"}
	}
	return nil
}

// sandboxSecurity fills the sandbox's namespaces and pod-level security:
// host namespaces, a privileged sandbox when any container is privileged
// (containerd refuses privileged containers in an unprivileged sandbox),
// the pod's user and groups, and its sysctls.
func sandboxSecurity(pod *v1.Pod, cfg *runtimeapi.PodSandboxConfig) {
	lsc := cfg.Linux.SecurityContext
	ns := lsc.NamespaceOptions
	if pod.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		if sc := all[i].SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			lsc.Privileged = true
		}
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			lsc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			lsc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		lsc.SupplementalGroups = append(lsc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			lsc.SupplementalGroups = append(lsc.SupplementalGroups, *psc.FSGroup)
		}
		for _, s := range psc.Sysctls {
			if cfg.Linux.Sysctls == nil {
				cfg.Linux.Sysctls = map[string]string{}
			}
			cfg.Linux.Sysctls[s.Name] = s.Value
		}
	}
}
