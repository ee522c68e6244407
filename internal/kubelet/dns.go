package kubelet

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Limits glibc (and upstream's validation) put on resolv.conf.
const (
	maxDNSNameservers = 3
	maxDNSSearches    = 32
)

// hostDNS is the node's own resolver configuration (dnsPolicy Default).
type hostDNS struct {
	Servers, Searches, Options []string
}

// parseResolvConf reads the nameserver (loopback ones skipped),
// search/domain and options lines of a resolv.conf.
func parseResolvConf(text string) hostDNS {
	var h hostDNS
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			// A loopback resolver on the node is unreachable from a pod's
			// network namespace.
			if ip, err := netip.ParseAddr(f[1]); err == nil && ip.IsLoopback() {
				continue
			}
			h.Servers = append(h.Servers, f[1])
		case "search":
			h.Searches = append([]string{}, f[1:]...)
		case "domain":
			h.Searches = []string{f[1]}
		case "options":
			h.Options = append(h.Options, f[1:]...)
		}
	}
	return h
}

// dnsConfig is the pod's resolv.conf as upstream builds it from dnsPolicy,
// the cluster DNS settings and the pod's dnsConfig. A nil result leaves
// the runtime's default (a copy of the node's resolv.conf).
func dnsConfig(pod *v1.Pod, clusterDNS, clusterDomain string, host hostDNS) *runtimeapi.DNSConfig {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault // a host-network pod only uses the cluster DNS when it asks with ClusterFirstWithHostNet
	}
	if (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) && clusterDNS == "" {
		policy = v1.DNSDefault
	}
	cfg := &runtimeapi.DNSConfig{}
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		cfg.Servers = []string{clusterDNS}
		cfg.Searches = []string{pod.Namespace + ".svc." + clusterDomain, "svc." + clusterDomain, clusterDomain}
		cfg.Searches = append(cfg.Searches, host.Searches...)
		cfg.Options = []string{"ndots:5"}
	case v1.DNSDefault:
		cfg.Servers = append([]string{}, host.Servers...)
		cfg.Searches = append([]string{}, host.Searches...)
		cfg.Options = append([]string{}, host.Options...)
	case v1.DNSNone:
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Servers = append(cfg.Servers, dc.Nameservers...)
		cfg.Searches = append(cfg.Searches, dc.Searches...)
		cfg.Options = mergeDNSOptions(cfg.Options, dc.Options)
	}
	cfg.Servers = dedupe(cfg.Servers)
	if len(cfg.Servers) > maxDNSNameservers {
		cfg.Servers = cfg.Servers[:maxDNSNameservers]
	}
	cfg.Searches = dedupe(cfg.Searches)
	if len(cfg.Searches) > maxDNSSearches {
		cfg.Searches = cfg.Searches[:maxDNSSearches]
	}
	return cfg
}

// mergeDNSOptions applies the pod's options over base by name; a pod
// option without a value replaces a valued one of the same name.
func mergeDNSOptions(base []string, pod []v1.PodDNSConfigOption) []string {
	var names []string
	vals := map[string]string{}
	set := func(name, val string) {
		if _, ok := vals[name]; !ok {
			names = append(names, name)
		}
		vals[name] = val
	}
	for _, o := range base {
		n, v, _ := strings.Cut(o, ":")
		set(n, v)
	}
	for _, o := range pod {
		v := ""
		if o.Value != nil {
			v = *o.Value
		}
		set(o.Name, v)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if vals[n] == "" {
			out = append(out, n)
		} else {
			out = append(out, n+":"+vals[n])
		}
	}
	return out
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// podHostname is the pod's hostname (spec.hostname or its name, cut to 63
// characters) and, with a subdomain, its FQDN.
func podHostname(pod *v1.Pod, clusterDomain string) (host, fqdn string) {
	host = pod.Name
	if pod.Spec.Hostname != "" {
		host = pod.Spec.Hostname
	}
	if len(host) > 63 {
		host = strings.TrimRight(host[:63], "-.")
	}
	if pod.Spec.Subdomain != "" {
		fqdn = fmt.Sprintf("%s.%s.%s.svc.%s", host, pod.Spec.Subdomain, pod.Namespace, clusterDomain)
	}
	return host, fqdn
}

// hostsFile is the /etc/hosts the pod's containers see: upstream's
// managed file for pods on the pod network, the node's file for host
// network pods, then the pod's hostAliases.
func hostsFile(pod *v1.Pod, podIPs []string, clusterDomain, nodeHosts string) []byte {
	var b strings.Builder
	if pod.Spec.HostNetwork {
		b.WriteString(nodeHosts)
		if nodeHosts != "" && !strings.HasSuffix(nodeHosts, "\n") {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString("# Kubernetes-managed hosts file.\n")
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		host, fqdn := podHostname(pod, clusterDomain)
		for _, ip := range podIPs {
			if fqdn != "" {
				fmt.Fprintf(&b, "%s\t%s\t%s\n", ip, fqdn, host)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", ip, host)
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return []byte(b.String())
}
