package policy

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered rules (run with -update if intended):\n%s", path, lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	ws, gs := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		ws[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		gs[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !gs[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !ws[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// normalize sorts set and map elements, which the fake dumps in the order
// they were added; rules keep their order.
func normalize(dump string) string {
	var other, elems []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "add element ") {
			elems = append(elems, l)
		} else {
			other = append(other, l)
		}
	}
	slices.Sort(elems)
	return strings.Join(append(other, elems...), "\n")
}

func render(t *testing.T, in Input) string {
	t.Helper()
	out, err := Render(Compute(in))
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	return out
}

// TestGoldenRuleset renders the fixture's table: default deny, additive
// policies, every peer kind, numeric/named/ranged ports on TCP/UDP/SCTP,
// egress named ports resolved per destination, policyTypes defaulting.
func TestGoldenRuleset(t *testing.T) {
	golden(t, "ruleset.golden", render(t, fixture()))
}

// TestGoldenOtherNode is the same cluster seen from node-b: other pods
// are enforced there, with the same peer sets.
func TestGoldenOtherNode(t *testing.T) {
	in := fixture()
	in.NodeName = "node-b"
	golden(t, "ruleset-node-b.golden", render(t, in))
}

func TestPolicyTypesDefaulting(t *testing.T) {
	egressRule := []networkingv1.NetworkPolicyEgressRule{{}}
	for _, tc := range []struct {
		name           string
		types          []networkingv1.PolicyType
		egress         []networkingv1.NetworkPolicyEgressRule
		wantIn, wantEg bool
	}{
		{"nothing: ingress only", nil, nil, true, false},
		{"egress rules: both", nil, egressRule, true, true},
		{"explicit ingress", []networkingv1.PolicyType{"Ingress"}, egressRule, true, false},
		{"explicit egress", []networkingv1.PolicyType{"Egress"}, nil, false, true},
		{"explicit both", []networkingv1.PolicyType{"Ingress", "Egress"}, nil, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy("default", "p", nil, func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes, s.Egress = tc.types, tc.egress
			})
			in, eg := policyTypes(p)
			if in != tc.wantIn || eg != tc.wantEg {
				t.Fatalf("policyTypes = ingress %v egress %v, want %v %v", in, eg, tc.wantIn, tc.wantEg)
			}
			rs := Compute(Input{NodeName: localNode, Policies: []*networkingv1.NetworkPolicy{p},
				Pods: []*v1.Pod{pod("default", "a", localNode, "10.96.1.1", nil)}})
			if _, ok := rs.Ingress["10.96.1.1"]; ok != tc.wantIn {
				t.Errorf("ingress isolation = %v, want %v", ok, tc.wantIn)
			}
			if _, ok := rs.Egress["10.96.1.1"]; ok != tc.wantEg {
				t.Errorf("egress isolation = %v, want %v", ok, tc.wantEg)
			}
		})
	}
}

// TestIngressChain checks the chain one local pod gets for single
// features, table-driven.
func TestIngressChain(t *testing.T) {
	target := pod("default", "t", localNode, "10.96.1.1", map[string]string{"app": "t"}, port("http", 8080, v1.ProtocolTCP), port("http", 8053, v1.ProtocolUDP))
	peers := []*v1.Pod{
		pod("default", "a", "node-b", "10.96.2.1", map[string]string{"role": "a"}),
		pod("default", "b", "node-b", "10.96.2.2", map[string]string{"role": "b"}),
		pod("other", "a", "node-b", "10.96.2.3", map[string]string{"role": "a"}),
		pod("third", "a", "node-b", "10.96.2.4", map[string]string{"role": "a"}),
	}
	nss := []*v1.Namespace{ns("default", nil), ns("other", map[string]string{"env": "x"}), ns("third", nil)}
	both := podPeer(sel("role", "a"))
	both.NamespaceSelector = sel("env", "x")
	for _, tc := range []struct {
		name      string
		rules     []networkingv1.NetworkPolicyIngressRule
		wantRules []string
		wantPeers []string // elements of peers-default/p/in/0
	}{
		{"no rules: default deny", nil, []string{"drop"}, nil},
		{"empty rule: everything", []networkingv1.NetworkPolicyIngressRule{{}}, []string{"return", "drop"}, nil},
		{"podSelector: same namespace only",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "a"))}}},
			[]string{"ip saddr @peers-default/p/in/0 return", "drop"}, []string{"10.96.2.1"}},
		{"namespaceSelector: all pods of matching namespaces",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{nsPeer(sel("env", "x"))}}},
			[]string{"ip saddr @peers-default/p/in/0 return", "drop"}, []string{"10.96.2.3"}},
		{"empty namespaceSelector: every namespace",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{nsPeer(&metav1.LabelSelector{})}}},
			[]string{"ip saddr @peers-default/p/in/0 return", "drop"}, []string{"10.96.1.1", "10.96.2.1", "10.96.2.2", "10.96.2.3", "10.96.2.4"}},
		{"namespaceSelector by metadata.name label",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{nsPeer(sel(v1.LabelMetadataName, "third"))}}},
			[]string{"ip saddr @peers-default/p/in/0 return", "drop"}, []string{"10.96.2.4"}},
		{"both selectors in one peer: intersection",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{both}}},
			[]string{"ip saddr @peers-default/p/in/0 return", "drop"}, []string{"10.96.2.3"}},
		{"ipBlock with except",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{blockPeer("172.16.0.0/12", "172.17.0.0/16")}}},
			[]string{"ip saddr 172.16.0.0/12 ip saddr != { 172.17.0.0/16 } return", "drop"}, nil},
		{"ipBlock host bits masked, IPv6 skipped",
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{blockPeer("172.16.1.1/16"), blockPeer("fd00::/8")}}},
			[]string{"ip saddr 172.16.0.0/16 return", "drop"}, nil},
		{"numeric port, default protocol TCP",
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: numPort(v1.ProtocolTCP, 80).Port}}}},
			[]string{"meta l4proto tcp th dport 80 return", "drop"}, nil},
		{"endPort range and SCTP",
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{rangePort(v1.ProtocolTCP, 32000, 32768), numPort(v1.ProtocolSCTP, 9)}}},
			[]string{"meta l4proto tcp th dport 32000-32768 return", "meta l4proto sctp th dport 9 return", "drop"}, nil},
		{"named port resolved per protocol on the destination pod",
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolUDP, "http"), namedPortRef(v1.ProtocolTCP, "http")}}},
			[]string{"meta l4proto udp th dport 8053 return", "meta l4proto tcp th dport 8080 return", "drop"}, nil},
		{"named port the pod lacks: allows nothing (not everything)",
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "nope")}}},
			[]string{"drop"}, nil},
		{"peers × ports",
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "b")), blockPeer("1.2.3.0/24")},
				Ports: []networkingv1.NetworkPolicyPort{numPort(v1.ProtocolTCP, 1), numPort(v1.ProtocolUDP, 2)},
			}},
			[]string{
				"ip saddr @peers-default/p/in/0 meta l4proto tcp th dport 1 return",
				"ip saddr @peers-default/p/in/0 meta l4proto udp th dport 2 return",
				"ip saddr 1.2.3.0/24 meta l4proto tcp th dport 1 return",
				"ip saddr 1.2.3.0/24 meta l4proto udp th dport 2 return",
				"drop",
			}, []string{"10.96.2.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy("default", "p", sel("app", "t"), func(s *networkingv1.NetworkPolicySpec) { s.Ingress = tc.rules })
			rs := Compute(Input{NodeName: localNode, Policies: []*networkingv1.NetworkPolicy{p}, Namespaces: nss, Pods: append([]*v1.Pod{target}, peers...)})
			// Every chain starts by letting the pod reach itself (hairpin
			// through a service): a pod cannot block itself.
			want := append([]string{"ip saddr 10.96.1.1 return"}, tc.wantRules...)
			if got := rs.Chains["ingress-default/t"]; !slices.Equal(got, want) {
				t.Errorf("chain rules:\n got %q\nwant %q", got, want)
			}
			if rs.Ingress["10.96.1.1"] != "ingress-default/t" {
				t.Errorf("ingress map = %v", rs.Ingress)
			}
			if len(rs.Egress) != 0 {
				t.Errorf("egress isolated without Egress type: %v", rs.Egress)
			}
			var got []string
			if s := rs.Sets["peers-default/p/in/0"]; s != nil {
				got = sortedKeys(s.Elements)
			}
			if !slices.Equal(got, tc.wantPeers) {
				t.Errorf("peer set = %v, want %v", got, tc.wantPeers)
			}
		})
	}
}

// TestEgressNamedPorts: a named port in an egress rule resolves against
// each destination pod, so two pods naming different numbers are both
// reachable, each on its own number only.
func TestEgressNamedPorts(t *testing.T) {
	pods := []*v1.Pod{
		pod("default", "src", localNode, "10.96.1.1", map[string]string{"app": "src"}),
		pod("default", "d1", "node-b", "10.96.2.1", map[string]string{"app": "dst"}, port("web", 80, v1.ProtocolTCP)),
		pod("default", "d2", "node-b", "10.96.2.2", map[string]string{"app": "dst"}, port("web", 8080, v1.ProtocolTCP), port("web", 8081, v1.ProtocolUDP)),
		pod("default", "d3", "node-b", "10.96.2.3", map[string]string{"app": "other"}, port("web", 9999, v1.ProtocolTCP)),
	}
	for _, tc := range []struct {
		name string
		to   []networkingv1.NetworkPolicyPeer
		want []string
	}{
		{"selected pods", []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "dst"))}, []string{"10.96.2.1 . tcp . 80", "10.96.2.2 . tcp . 8080"}},
		{"no peers: any pod", nil, []string{"10.96.2.1 . tcp . 80", "10.96.2.2 . tcp . 8080", "10.96.2.3 . tcp . 9999"}},
		{"pods inside an ipBlock", []networkingv1.NetworkPolicyPeer{blockPeer("10.96.2.0/30", "10.96.2.2/32")}, []string{"10.96.2.1 . tcp . 80", "10.96.2.3 . tcp . 9999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy("default", "p", sel("app", "src"), func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
				s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: tc.to, Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "web")}}}
			})
			rs := Compute(Input{NodeName: localNode, Policies: []*networkingv1.NetworkPolicy{p}, Pods: pods})
			s := rs.Sets["named-default/p/eg/0"]
			if s == nil {
				t.Fatalf("no named-port set; sets: %v", sortedKeys(rs.Sets))
			}
			if got := sortedKeys(s.Elements); !slices.Equal(got, tc.want) {
				t.Errorf("named-port elements = %v, want %v", got, tc.want)
			}
			if got := rs.Chains["egress-default/src"]; !slices.Contains(got, "ip daddr . meta l4proto . th dport @named-default/p/eg/0 return") {
				t.Errorf("egress chain lacks the named-port rule: %q", got)
			}
			if _, ok := rs.Ingress["10.96.1.1"]; ok {
				t.Errorf("Egress-only policy isolated ingress")
			}
		})
	}
}

// TestNotEnforced: pods of other nodes, host-network pods, terminated
// pods and pods without IPs are never isolated here, nor peers.
func TestNotEnforced(t *testing.T) {
	rs := Compute(fixture())
	for _, ip := range []string{"10.96.2.10", "192.168.50.2", "10.96.1.99", "10.96.1.50"} {
		if _, ok := rs.Ingress[ip]; ok {
			t.Errorf("%s is ingress-isolated on %s", ip, localNode)
		}
	}
	for name, s := range rs.Sets {
		for _, ip := range []string{"192.168.50.2", "10.96.1.99"} {
			for e := range s.Elements {
				if strings.HasPrefix(e, ip) {
					t.Errorf("set %s holds %s", name, e)
				}
			}
		}
	}
	for _, s := range []string{"peers-prod/", "ingress-prod/"} {
		for name := range rs.Sets {
			if strings.HasPrefix(name, s) {
				t.Errorf("set %s exists though its policy selects no local pod", name)
			}
		}
	}
}

func TestLongNames(t *testing.T) {
	long := strings.Repeat("n", 63) + "/" + strings.Repeat("p", 253)
	a, b := objName("peers-"+long+"/in/0"), objName("peers-"+long+"/in/1")
	if len(a) > 200 || a == b {
		t.Fatalf("objName: %q (%d), %q", a, len(a), b)
	}
	if objName("short") != "short" {
		t.Fatal("short names must be kept")
	}
}

// TestIncrementalMatchesFull drives a sequence of cluster changes through
// WriteDiff on a fake table and checks, after each, that the table is
// exactly what a full rebuild would write, and that changes touch only
// what they must.
func TestIncrementalMatchesFull(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	a := NewApplier(fake, DefaultTable)
	in := fixture()
	if _, full, err := a.Apply(ctx, Compute(in), false); err != nil || !full {
		t.Fatalf("first apply: full=%v err=%v", full, err)
	}
	steps := []struct {
		name   string
		change func(*Input)
		// substrings every operation of the transaction must match one of
		only []string
	}{
		{"a peer pod starts on another node", func(in *Input) {
			in.Pods = append(in.Pods, pod("default", "client-3", "node-b", "10.96.2.22", map[string]string{"role": "client"}))
		}, []string{"element ip skiff-policy peers-"}},
		{"a peer pod's IP changes", func(in *Input) {
			for i, p := range in.Pods {
				if p.Name == "client-3" {
					in.Pods[i] = pod("default", "client-3", "node-b", "10.96.2.23", map[string]string{"role": "client"})
				}
			}
		}, []string{"element ip skiff-policy peers-"}},
		{"a namespace gains a label", func(in *Input) {
			in.Namespaces[0] = ns("default", map[string]string{"team": "prod"})
		}, []string{"element ip skiff-policy peers-"}},
		{"an unrelated policy is added", func(in *Input) {
			in.Policies = append(in.Policies, policy("prod", "more", nil, nil))
		}, []string{}},
		{"a policy selecting one local pod changes its port", func(in *Input) {
			for i, p := range in.Policies {
				if p.Name == "client" {
					p = p.DeepCopy()
					p.Spec.Egress[0].Ports[1] = numPort(v1.ProtocolTCP, 9443)
					in.Policies[i] = p
				}
			}
		}, []string{"chain ip skiff-policy egress-default/client-1", "rule ip skiff-policy egress-default/client-1"}},
		{"a local pod starts and is selected", func(in *Input) {
			in.Pods = append(in.Pods, pod("default", "db-3", localNode, "10.96.1.31", map[string]string{"app": "db"}, port("sql", 15432, v1.ProtocolTCP)))
		}, []string{"ingress-default/db-3", "element ip skiff-policy peers-", "element ip skiff-policy named-default/web-egress/eg/0 { 10.96.1.31 . tcp . 15432 }"}},
		{"a policy is deleted", func(in *Input) {
			in.Policies = slices.DeleteFunc(in.Policies, func(p *networkingv1.NetworkPolicy) bool { return p.Name == "web-egress" })
		}, []string{"egress-default/web-1", "named-default/web-egress", "egress-pods"}},
		{"every policy is deleted", func(in *Input) { in.Policies = nil }, nil},
	}
	for _, st := range steps {
		st.change(&in)
		ops, full, err := a.Apply(ctx, Compute(in), false)
		if err != nil || full {
			t.Fatalf("%s: full=%v err=%v", st.name, full, err)
		}
		if want, got := normalize(render(t, in)), normalize(fake.Dump()); got != want {
			t.Fatalf("%s: incremental table differs from a full rebuild:\n%s", st.name, lineDiff(want, got))
		}
		if st.only == nil {
			continue
		}
		if len(st.only) == 0 {
			if ops != 0 {
				t.Errorf("%s: %d operations, want none:\n%s", st.name, ops, fake.LastTransaction)
			}
			continue
		}
		if ops == 0 {
			t.Errorf("%s: no operations", st.name)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(fake.LastTransaction.String()), "\n") {
			ok := false
			for _, s := range st.only {
				ok = ok || strings.Contains(line, s)
			}
			if !ok {
				t.Errorf("%s: unexpected operation %q", st.name, line)
			}
		}
	}
	if strings.Contains(fake.Dump(), "peers-") || strings.Contains(fake.Dump(), "ingress-default") {
		t.Errorf("objects left after every policy was deleted:\n%s", fake.Dump())
	}
}

// TestBadInput: what the API server would refuse, or an older server
// stored, is skipped with a problem to log, never a crash or an
// allow-everything.
func TestBadInput(t *testing.T) {
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes"}}}
	target := pod("default", "t", localNode, "10.96.1.1", map[string]string{"app": "t"})
	for _, tc := range []struct {
		name      string
		pol       *networkingv1.NetworkPolicy
		wantChain []string // nil: the pod is not isolated
		problem   string
	}{
		{"bad pod selector: policy skipped", policy("default", "p", bad, nil), nil, "pod selector"},
		{"bad peer selector: peer allows nothing", policy("default", "p", sel("app", "t"), func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(bad)}}}
		}), []string{"ip saddr 10.96.1.1 return", "ip saddr @peers-default/p/in/0 return", "drop"}, "peer pod selector"},
		{"bad cidr: peer skipped", policy("default", "p", sel("app", "t"), func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{blockPeer("10.0.0.0/33")}}}
		}), []string{"ip saddr 10.96.1.1 return", "drop"}, "ipBlock cidr"},
		{"bad except: the whole peer skipped (never allow more)", policy("default", "p", sel("app", "t"), func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{blockPeer("10.0.0.0/8", "nope")}}}
		}), []string{"ip saddr 10.96.1.1 return", "drop"}, "ipBlock except"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := Compute(Input{NodeName: localNode, Policies: []*networkingv1.NetworkPolicy{tc.pol}, Pods: []*v1.Pod{target}})
			if got := rs.Chains["ingress-default/t"]; !slices.Equal(got, tc.wantChain) {
				t.Errorf("chain = %q, want %q", got, tc.wantChain)
			}
			if len(rs.Problems) != 1 || !strings.Contains(rs.Problems[0], tc.problem) || !strings.Contains(rs.Problems[0], "default/p") {
				t.Errorf("problems = %q, want one about %q", rs.Problems, tc.problem)
			}
			if _, err := Render(rs); err != nil {
				t.Errorf("rendering: %v", err)
			}
		})
	}
}

// TestGoldenIncremental records the exact transactions of live changes:
// a peer pod starting elsewhere (set elements only), a policy changing
// (one pod's chain rewritten, nothing else), a policy deleted (its chains
// flushed before its sets go).
func TestGoldenIncremental(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	a := NewApplier(fake, DefaultTable)
	in := fixture()
	if _, _, err := a.Apply(ctx, Compute(in), true); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	step := func(name string, change func()) {
		change()
		if _, full, err := a.Apply(ctx, Compute(in), false); err != nil || full {
			t.Fatalf("%s: full=%v err=%v", name, full, err)
		}
		fmt.Fprintf(&b, "# %s\n%s\n", name, fake.LastTransaction.String())
	}
	step("peer pod default/client-3 starts on node-b", func() {
		in.Pods = append(in.Pods, pod("default", "client-3", "node-b", "10.96.2.22", map[string]string{"role": "client"}))
	})
	step("policy default/db-allow-clients allows TCP 6432 too", func() {
		for i, p := range in.Policies {
			if p.Name == "db-allow-clients" {
				p = p.DeepCopy()
				p.Spec.Ingress[0].Ports = append(p.Spec.Ingress[0].Ports, numPort(v1.ProtocolTCP, 6432))
				in.Policies[i] = p
			}
		}
	})
	step("policy default/web-egress deleted", func() {
		in.Policies = slices.DeleteFunc(in.Policies, func(p *networkingv1.NetworkPolicy) bool { return p.Name == "web-egress" })
	})
	golden(t, "incremental.golden", b.String())
}
