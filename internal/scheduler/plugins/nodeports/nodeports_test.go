package nodeports

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func portsPod(name, node string, ports ...v1.ContainerPort) *v1.Pod {
	p := schedtest.Pod(name, node, "", nil)
	p.Spec.Containers[0].Ports = ports
	return p
}

func TestFilter(t *testing.T) {
	tcp := func(ip string, port int32) v1.ContainerPort {
		return v1.ContainerPort{HostIP: ip, HostPort: port, ContainerPort: port, Protocol: v1.ProtocolTCP}
	}
	udp := func(ip string, port int32) v1.ContainerPort {
		return v1.ContainerPort{HostIP: ip, HostPort: port, ContainerPort: port, Protocol: v1.ProtocolUDP}
	}
	tests := []struct {
		name     string
		existing []v1.ContainerPort
		want     []v1.ContainerPort
		fits     bool
	}{
		{"no host ports wanted", []v1.ContainerPort{tcp("", 80)}, []v1.ContainerPort{{ContainerPort: 80}}, true},
		{"free port", []v1.ContainerPort{tcp("", 80)}, []v1.ContainerPort{tcp("", 81)}, true},
		{"same port and protocol, both on all addresses", []v1.ContainerPort{tcp("", 80)}, []v1.ContainerPort{tcp("", 80)}, false},
		{"same port, other protocol", []v1.ContainerPort{tcp("", 80)}, []v1.ContainerPort{udp("", 80)}, true},
		{"empty protocol defaults to TCP", []v1.ContainerPort{tcp("", 80)}, []v1.ContainerPort{{HostPort: 80, ContainerPort: 80}}, false},
		{"same port on different IPs", []v1.ContainerPort{tcp("10.0.0.1", 80)}, []v1.ContainerPort{tcp("10.0.0.2", 80)}, true},
		{"same port on the same IP", []v1.ContainerPort{tcp("10.0.0.1", 80)}, []v1.ContainerPort{tcp("10.0.0.1", 80)}, false},
		{"existing on 0.0.0.0 blocks a specific IP", []v1.ContainerPort{tcp("0.0.0.0", 80)}, []v1.ContainerPort{tcp("10.0.0.1", 80)}, false},
		{"wanted on 0.0.0.0 conflicts with a specific IP", []v1.ContainerPort{tcp("10.0.0.1", 80)}, []v1.ContainerPort{tcp("", 80)}, false},
		{"one of several ports taken", []v1.ContainerPort{udp("", 53)}, []v1.ContainerPort{tcp("", 53), udp("", 53)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			existing := portsPod("old", "a", tt.existing...)
			snap := framework.NewSnapshot([]*v1.Pod{existing}, []*v1.Node{schedtest.Node("a", "1", "1Gi", nil)})
			p, _ := New(nil)
			got := schedtest.FilterAll(schedtest.Handle(snap, nil, p).Fwk, snap, portsPod("new", "", tt.want...))["a"]
			if tt.fits && got != "" {
				t.Fatalf("got %q, want a fit", got)
			}
			if !tt.fits && got != "Unschedulable: "+ErrReason {
				t.Fatalf("got %q, want Unschedulable: %s", got, ErrReason)
			}
		})
	}
}

func TestFilterAfterPodRemoved(t *testing.T) {
	existing := portsPod("old", "a", v1.ContainerPort{HostPort: 8080, ContainerPort: 8080})
	ni := framework.NewNodeInfo(existing)
	ni.SetNode(schedtest.Node("a", "1", "1Gi", nil))
	pi := framework.NewPodInfo(portsPod("new", "", v1.ContainerPort{HostPort: 8080, ContainerPort: 8080}))
	p := &NodePorts{}
	if st := p.Filter(t.Context(), framework.NewCycleState(), pi, ni); st.IsSuccess() {
		t.Fatalf("port 8080 is taken, but the filter passed")
	}
	if err := ni.RemovePod(existing); err != nil {
		t.Fatal(err)
	}
	if st := p.Filter(t.Context(), framework.NewCycleState(), pi, ni); !st.IsSuccess() {
		t.Fatalf("port 8080 was freed, but got %v", st)
	}
}
