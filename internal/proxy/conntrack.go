package proxy

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// Flow names conntrack entries to delete: UDP flows to a service address
// (IP and port, or a node port) that were DNATed to an endpoint which is
// gone. With EndpointIP empty it means every flow to the service address
// (flows that were rejected while the service had no endpoints).
type Flow struct {
	Protocol   v1.Protocol
	ServiceIP  string // empty for a node port
	Port       int32
	EndpointIP string
}

// Conntrack deletes conntrack entries.
type Conntrack interface {
	Delete(ctx context.Context, flows []Flow) error
}

// staleFlows compares the rendered service before and after a change.
// Only UDP needs this: a TCP connection to a dead endpoint resets, while
// a UDP conntrack entry keeps steering a client's packets (DNS!) into the
// void until it expires.
func staleFlows(old, new *ServiceInfo) []Flow {
	if old == nil {
		return nil
	}
	var out []Flow
	for id, op := range old.Ports {
		if op.Protocol != v1.ProtocolUDP {
			continue
		}
		np := &portInfo{}
		if new != nil && new.Ports[id] != nil {
			np = new.Ports[id]
		}
		for ep := range op.Endpoints {
			if np.Endpoints[ep] {
				continue
			}
			ip, _, _ := strings.Cut(ep, "/")
			for _, sip := range op.IPs {
				out = append(out, Flow{Protocol: v1.ProtocolUDP, ServiceIP: sip, Port: op.Port, EndpointIP: ip})
			}
			if op.NodePort != 0 {
				out = append(out, Flow{Protocol: v1.ProtocolUDP, Port: op.NodePort, EndpointIP: ip})
			}
		}
	}
	// A service that gains its first endpoints: clients' earlier packets
	// were rejected and left entries that would keep failing.
	if new != nil {
		for id, np := range new.Ports {
			op := old.Ports[id]
			if np.Protocol != v1.ProtocolUDP || len(np.Endpoints) == 0 || (op != nil && len(op.Endpoints) > 0) {
				continue
			}
			for _, sip := range np.IPs {
				out = append(out, Flow{Protocol: v1.ProtocolUDP, ServiceIP: sip, Port: np.Port})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

// NetlinkConntrack deletes entries over netlink, in the network namespace
// of the calling thread; it needs no conntrack tool.
type NetlinkConntrack struct{}

var _ Conntrack = NetlinkConntrack{}

// Filter returns the netlink filter matching f's entries.
func (f Flow) Filter() (*netlink.ConntrackFilter, error) {
	proto := map[v1.Protocol]uint8{v1.ProtocolTCP: unix.IPPROTO_TCP, v1.ProtocolUDP: unix.IPPROTO_UDP, v1.ProtocolSCTP: unix.IPPROTO_SCTP}[f.Protocol]
	if proto == 0 {
		return nil, fmt.Errorf("conntrack filter: unknown protocol %q", f.Protocol)
	}
	cf := &netlink.ConntrackFilter{}
	if err := cf.AddProtocol(proto); err != nil {
		return nil, err
	}
	if f.ServiceIP != "" {
		if err := cf.AddIP(netlink.ConntrackOrigDstIP, net.ParseIP(f.ServiceIP)); err != nil {
			return nil, err
		}
	}
	if err := cf.AddPort(netlink.ConntrackOrigDstPort, uint16(f.Port)); err != nil {
		return nil, err
	}
	if f.EndpointIP != "" {
		// The reply of a DNATed flow comes from the endpoint.
		if err := cf.AddIP(netlink.ConntrackReplySrcIP, net.ParseIP(f.EndpointIP)); err != nil {
			return nil, err
		}
	}
	return cf, nil
}

// Delete removes every entry matching one of flows in one table walk.
func (NetlinkConntrack) Delete(_ context.Context, flows []Flow) error {
	var filters []netlink.CustomConntrackFilter
	for _, f := range flows {
		cf, err := f.Filter()
		if err != nil {
			return err
		}
		filters = append(filters, cf)
	}
	if len(filters) == 0 {
		return nil
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...); err != nil {
		return fmt.Errorf("deleting conntrack entries: %w", err)
	}
	return nil
}

// ExecConntrack shells out to the conntrack(8) tool (the proxy uses
// NetlinkConntrack unless told otherwise).
type ExecConntrack struct {
	Path string
	// Run runs a command; tests replace it.
	Run func(ctx context.Context, name string, args ...string) error
}

// NewExecConntrack finds conntrack on PATH; it returns nil when absent.
func NewExecConntrack() *ExecConntrack {
	p, err := exec.LookPath("conntrack")
	if err != nil {
		return nil
	}
	return &ExecConntrack{Path: p}
}

// Args returns the conntrack arguments that delete one flow.
func (f Flow) Args() []string {
	args := []string{"-D", "-p", strings.ToLower(string(f.Protocol))}
	if f.ServiceIP != "" {
		args = append(args, "--orig-dst", f.ServiceIP)
	}
	args = append(args, "--orig-port-dst", strconv.Itoa(int(f.Port)))
	if f.EndpointIP != "" {
		args = append(args, "--dst-nat", f.EndpointIP)
	}
	return args
}

// Delete runs conntrack -D once per flow. conntrack exits 1 when nothing
// matched, which is not an error here.
func (c *ExecConntrack) Delete(ctx context.Context, flows []Flow) error {
	run := c.Run
	if run == nil {
		run = func(ctx context.Context, name string, args ...string) error {
			return exec.CommandContext(ctx, name, args...).Run()
		}
	}
	var errs []string
	for _, f := range flows {
		err := run(ctx, c.Path, f.Args()...)
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			err = nil
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%v: %v", f.Args(), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deleting conntrack entries: %s", strings.Join(errs, "; "))
	}
	return nil
}
