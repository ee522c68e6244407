package overlay

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func peer(name, cidr, ip, mac string) Peer {
	p := Peer{Name: name}
	if cidr != "" {
		p.PodCIDR = netip.MustParsePrefix(cidr)
	}
	if ip != "" {
		p.PublicIP = netip.MustParseAddr(ip)
	}
	if mac != "" {
		p.VTEPMAC = mustMAC(mac)
	}
	return p
}

func TestDesired(t *testing.T) {
	self := Options{Device: "skiff.1", Self: "a", SelfCIDR: netip.MustParsePrefix("10.93.1.0/24")}
	peers := []Peer{
		peer("c", "10.93.3.0/24", "10.92.0.4", "02:00:00:00:00:03"),
		peer("a", "10.93.1.0/24", "10.92.0.2", "02:00:00:00:00:01"),
		peer("b", "10.93.2.0/24", "10.92.0.3", "02:00:00:00:00:02"),
		peer("nocidr", "", "10.92.0.5", "02:00:00:00:00:05"),
		peer("nomac", "10.93.6.0/24", "10.92.0.6", ""),
		peer("overlap", "10.93.1.0/25", "10.92.0.7", "02:00:00:00:00:07"),
		peer("dup", "10.93.2.0/24", "10.92.0.8", "02:00:00:00:00:08"),
		peer("noip", "10.93.9.0/24", "", "02:00:00:00:00:09"),
		{Name: "hostgw", PodCIDR: netip.MustParsePrefix("10.93.10.0/24"), PublicIP: netip.MustParseAddr("10.92.0.10"), Backend: HostGW, VTEPMAC: mustMAC("02:00:00:00:00:0a")},
	}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }

	tests := []struct {
		name    string
		backend Backend
		want    State
		skipped []string
	}{
		{
			name: "vxlan", backend: VXLAN,
			want: State{
				Routes: []Route{
					{Dst: p("10.93.2.0/24"), Gw: a("10.93.2.0"), Dev: "skiff.1"},
					{Dst: p("10.93.3.0/24"), Gw: a("10.93.3.0"), Dev: "skiff.1"},
				},
				Neighbors: []Neighbor{{IP: a("10.93.2.0"), MAC: "02:00:00:00:00:02"}, {IP: a("10.93.3.0"), MAC: "02:00:00:00:00:03"}},
				FDB:       []FDBEntry{{MAC: "02:00:00:00:00:02", Dst: a("10.92.0.3")}, {MAC: "02:00:00:00:00:03", Dst: a("10.92.0.4")}},
			},
			skipped: []string{"dup", "hostgw", "noip", "nocidr", "nomac", "overlap"},
		},
		{
			name: "host-gw", backend: HostGW,
			want: State{Routes: []Route{
				{Dst: p("10.93.2.0/24"), Gw: a("10.92.0.3")},
				{Dst: p("10.93.3.0/24"), Gw: a("10.92.0.4")},
				{Dst: p("10.93.10.0/24"), Gw: a("10.92.0.10")},
				// host-gw needs no MAC.
				{Dst: p("10.93.6.0/24"), Gw: a("10.92.0.6")},
			}},
			skipped: []string{"dup", "noip", "nocidr", "overlap"},
		},
		{name: "none", backend: None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := self
			o.Backend = tt.backend
			got, skipped := Desired(o, peers)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("state:\n got %+v\nwant %+v", got, tt.want)
			}
			var names []string
			for n := range skipped {
				names = append(names, n)
			}
			if len(names) != len(tt.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tt.skipped)
			}
			for _, n := range tt.skipped {
				if skipped[n] == "" {
					t.Errorf("%s not skipped (skipped: %v)", n, skipped)
				}
			}
		})
	}
}

// A peer going away removes exactly its entries: the state is a function
// of the current nodes, not of history.
func TestDesiredPeerRemoved(t *testing.T) {
	o := Options{Backend: VXLAN, Device: "skiff.1", Self: "a"}
	b := peer("b", "10.93.2.0/24", "10.92.0.3", "02:00:00:00:00:02")
	c := peer("c", "10.93.3.0/24", "10.92.0.4", "02:00:00:00:00:03")
	both, _ := Desired(o, []Peer{b, c})
	onlyC, _ := Desired(o, []Peer{c})
	if len(both.Routes) != 2 || len(onlyC.Routes) != 1 || onlyC.Routes[0].Dst.String() != "10.93.3.0/24" ||
		len(onlyC.FDB) != 1 || onlyC.FDB[0].MAC != "02:00:00:00:00:03" || len(onlyC.Neighbors) != 1 {
		t.Errorf("after removing b: %+v", onlyC)
	}
}

func TestPeerFromNode(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "b", Annotations: map[string]string{
			AnnotationVXLANMAC: "02:00:00:00:00:02", AnnotationBackend: "vxlan",
		}},
		Spec: corev1.NodeSpec{PodCIDR: "10.93.2.7/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "b"},
			{Type: corev1.NodeInternalIP, Address: "10.92.0.3"},
		}},
	}
	p := PeerFromNode(n)
	if p.PodCIDR.String() != "10.93.2.0/24" || p.PublicIP.String() != "10.92.0.3" || p.VTEPMAC.String() != "02:00:00:00:00:02" || p.Backend != VXLAN {
		t.Errorf("from InternalIP: %+v", p)
	}
	n.Annotations[AnnotationPublicIP] = "10.92.9.9"
	if p := PeerFromNode(n); p.PublicIP.String() != "10.92.9.9" {
		t.Errorf("the public-ip annotation should win over InternalIP: %v", p.PublicIP)
	}
	n.Annotations[AnnotationVXLANMAC] = "garbage"
	n.Spec.PodCIDR = "fd00::/64"
	if p := PeerFromNode(n); p.VTEPMAC != nil || p.PodCIDR.IsValid() {
		t.Errorf("unparsable fields should stay zero: %+v", p)
	}
}

func TestParseBackendAndMTU(t *testing.T) {
	for _, s := range []string{"vxlan", "host-gw", "none"} {
		if b, err := ParseBackend(s); err != nil || string(b) != s {
			t.Errorf("ParseBackend(%q) = %q, %v", s, b, err)
		}
	}
	if _, err := ParseBackend("udp"); err == nil {
		t.Error("unknown backend accepted")
	}
	if PodMTU(VXLAN, 1500) != 1450 || PodMTU(HostGW, 1500) != 1500 {
		t.Errorf("mtu: vxlan %d host-gw %d", PodMTU(VXLAN, 1500), PodMTU(HostGW, 1500))
	}
}

func TestAnnouncement(t *testing.T) {
	ip := netip.MustParseAddr("10.92.0.2")
	v := Announcement(VXLAN, ip, "02:00:00:00:00:01")
	if *v[AnnotationVXLANMAC] != "02:00:00:00:00:01" || *v[AnnotationPublicIP] != "10.92.0.2" || *v[AnnotationBackend] != "vxlan" {
		t.Errorf("vxlan: %v", v)
	}
	// host-gw deletes a MAC left from an earlier vxlan run (null in the
	// merge patch).
	if h := Announcement(HostGW, ip, ""); h[AnnotationVXLANMAC] != nil || *h[AnnotationBackend] != "host-gw" {
		t.Errorf("host-gw: %v", h)
	}
}

// A CIDR conflict (two agents joined with the same --pod-cidr) is warned
// about once, not on every pass; a peer not yet announced is only info.
func TestLogSkipped(t *testing.T) {
	var buf bytes.Buffer
	c := &Controller{log: slog.New(slog.NewTextHandler(&buf, nil))}
	conflict := map[string]string{"b": "pod CIDR 10.42.0.0/24 overlaps this node's", "c": "no VXLAN MAC announced yet"}
	c.logSkipped(conflict)
	c.logSkipped(conflict)
	out := buf.String()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "peer=b") || strings.Count(out, "level=INFO") != 1 {
		t.Errorf("log:\n%s", out)
	}
}
