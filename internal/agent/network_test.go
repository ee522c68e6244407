package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestUpstreamResolversSkipLoopbackStubs(t *testing.T) {
	if _, err := os.Stat("/run/systemd/resolve/resolv.conf"); err == nil {
		t.Skip("this host has systemd-resolved's upstream list, which the fallback would read")
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ conf, want string }{
		{"nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n", "192.0.2.53:53,[2001:db8::53]:53"},
		// Only a loopback stub: kept, since the DNS server runs in the
		// host's network namespace where it answers.
		{"nameserver 127.0.0.53\n", "127.0.0.53:53"},
		{"search example.com\n", ""},
	} {
		got := strings.Join(upstreamResolvers(write("resolv.conf", tc.conf)), ",")
		if got != tc.want {
			t.Errorf("resolv.conf %q: upstreams %q, want %q", tc.conf, got, tc.want)
		}
	}
	if got := upstreamResolvers(filepath.Join(dir, "missing")); got != nil {
		t.Errorf("missing resolv.conf: %v", got)
	}
}

func TestDNSSlice(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-1"}}
	sl := DNSSlice(node, netip.MustParseAddr("10.42.3.1"), 5353)
	if sl.Name != "kube-dns-n1" || sl.Namespace != "kube-system" || sl.Labels["kubernetes.io/service-name"] != "kube-dns" {
		t.Errorf("slice metadata: %+v", sl.ObjectMeta)
	}
	if len(sl.OwnerReferences) != 1 || sl.OwnerReferences[0].Kind != "Node" || sl.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("slice must be owned by its node: %+v", sl.OwnerReferences)
	}
	ep := sl.Endpoints[0]
	if ep.Addresses[0] != "10.42.3.1" || *ep.NodeName != "n1" || !*ep.Conditions.Ready {
		t.Errorf("endpoint: %+v", ep)
	}
	// The proxy matches slice ports to the service's by name and protocol.
	if len(sl.Ports) != 2 || *sl.Ports[0].Name != "dns" || *sl.Ports[0].Protocol != v1.ProtocolUDP || *sl.Ports[0].Port != 5353 ||
		*sl.Ports[1].Name != "dns-tcp" || *sl.Ports[1].Protocol != v1.ProtocolTCP || *sl.Ports[1].Port != 5353 {
		t.Errorf("ports: %+v", sl.Ports)
	}
	if !sameDNSSlice(sl, DNSSlice(node, netip.MustParseAddr("10.42.3.1"), 5353)) {
		t.Error("identical slices compare different: the agent would rewrite it every resync")
	}
	if sameDNSSlice(sl, DNSSlice(node, netip.MustParseAddr("10.42.3.1"), 53)) {
		t.Error("a changed port compares equal")
	}
}
