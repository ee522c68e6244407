package policy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/knftables"
)

// bigCluster is benchmark scale: nodes × podsPerNode pods in namespaces
// of 50 pods (app labels cycling over 5 values), and three policies per
// namespace: a default deny, an allow from the same app on a named port
// and an allow from a labelled namespace.
func bigCluster(nodes, podsPerNode int) Input {
	in := Input{NodeName: "node-0"}
	n := nodes * podsPerNode
	for i := 0; i < n; i++ {
		nsName := fmt.Sprintf("ns-%d", i/50)
		if i%50 == 0 {
			in.Namespaces = append(in.Namespaces, ns(nsName, map[string]string{"tier": fmt.Sprint(i / 50 % 4)}))
			in.Policies = append(in.Policies,
				policy(nsName, "deny", nil, nil),
				policy(nsName, "same-app", sel("app", "a0"), func(s *networkingv1.NetworkPolicySpec) {
					s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "a0"))},
						Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "http")},
					}}
				}),
				policy(nsName, "from-tier", sel("app", "a1"), func(s *networkingv1.NetworkPolicySpec) {
					s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
						From: []networkingv1.NetworkPolicyPeer{nsPeer(sel("tier", "1"))},
					}}
				}))
		}
		// Pods of a namespace spread over the nodes, as a scheduler would.
		node := fmt.Sprintf("node-%d", i%nodes)
		ip := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
		in.Pods = append(in.Pods, pod(nsName, fmt.Sprintf("p-%d", i), node, ip,
			map[string]string{"app": fmt.Sprintf("a%d", (i+i/100)%5)}, port("http", 8080, v1.ProtocolTCP)))
	}
	return in
}

// cpuTime is the CPU this process and its waited-for children (nft) have
// used: on a shared, loaded machine it says more than wall time.
func cpuTime() time.Duration {
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	d := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return d(self.Utime) + d(self.Stime) + d(children.Utime) + d(children.Stime)
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkCompute: the whole desired ruleset of one node of a 100-node,
// 10,000-pod cluster with 600 policies; every sync pays this.
func BenchmarkCompute(b *testing.B) {
	in := bigCluster(100, 100)
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		Compute(in)
	}
	reportCPU(b, cpu)
}

// BenchmarkPodChange: one pod elsewhere in the cluster starts: compute
// the ruleset and the transaction that adds it (into a fake table).
func BenchmarkPodChange(b *testing.B) {
	in := bigCluster(100, 100)
	fake := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	applied := Compute(in)
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		in.Pods = append(in.Pods, pod("ns-0", fmt.Sprintf("new-%d", i), "node-3", fmt.Sprintf("10.200.%d.%d", i/256%256, i%256),
			map[string]string{"app": "a0"}, port("http", 8080, v1.ProtocolTCP)))
		tx := fake.NewTransaction()
		WriteDiff(tx, applied, Compute(in))
		if tx.NumOperations() == 0 {
			b.Fatal("no operations for a new peer")
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkRealNFT: on the kernel (a fresh network namespace), the full
// build of node-0's table, then one peer pod starting per iteration:
// compute, diff, and one nft transaction.
func BenchmarkRealNFT(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("needs nft")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the netns dies with the thread
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		nft, err := knftables.New(knftables.IPv4Family, DefaultTable)
		if err != nil {
			errc <- err
			return
		}
		ctx := context.Background()
		a := NewApplier(nft, DefaultTable)
		in := bigCluster(100, 100)
		start, startCPU := time.Now(), cpuTime()
		rs := Compute(in)
		if _, _, err := a.Apply(ctx, rs, true); err != nil {
			errc <- err
			return
		}
		wall, fullCPU := time.Since(start), cpuTime()-startCPU
		elems := 0
		for _, s := range rs.Sets {
			elems += len(s.Elements)
		}
		b.Logf("full build: %v wall, %v cpu (%d chains, %d sets, %d set elements)", wall, fullCPU, len(rs.Chains), len(rs.Sets), elems)
		b.ResetTimer()
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			in.Pods = append(in.Pods, pod("ns-0", fmt.Sprintf("new-%d", i), "node-3", fmt.Sprintf("10.200.%d.%d", i/256%256, i%256),
				map[string]string{"app": "a0"}, port("http", 8080, v1.ProtocolTCP)))
			ops, full, err := a.Apply(ctx, Compute(in), false)
			if err != nil || full || ops == 0 {
				errc <- fmt.Errorf("incremental apply: ops=%d full=%v err=%v", ops, full, err)
				return
			}
		}
		b.StopTimer()
		reportCPU(b, cpu)
		errc <- a.Delete(ctx)
	}()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
