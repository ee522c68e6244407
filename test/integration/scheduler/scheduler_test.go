// Package scheduler is the scheduler's integration tier: skiff's real API
// server (embedded etcd) with the scheduler running in-process, hollow
// nodes registered through the API, and every placement rule shown end to
// end: pods are created through the API and the test reads back where the
// scheduler bound them, or the PodScheduled condition and
// FailedScheduling event that say why it did not.
package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

const (
	zoneKey     = v1.LabelTopologyZone
	waitTimeout = 60 * time.Second
)

var (
	taintedTaint = v1.Taint{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}
	preemptTaint = v1.Taint{Key: "dedicated", Value: "preempt", Effect: v1.TaintEffectNoSchedule}
)

// cluster is the shared topology: three zones of two nodes each, one
// tainted node and one small tainted node reserved for the preemption
// test. numNodes is their total.
const numNodes = 8

func startCluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	c := framework.Start(t, framework.Options{Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	groups := []hollow.Options{
		{Count: 2, Prefix: "za-", Labels: map[string]string{zoneKey: "za", "disk": "ssd"}},
		{Count: 2, Prefix: "zb-", Labels: map[string]string{zoneKey: "zb"}},
		{Count: 2, Prefix: "zc-", Labels: map[string]string{zoneKey: "zc"}},
		{Count: 1, Prefix: "tainted-", Labels: map[string]string{"role": "tainted"}, Taints: []v1.Taint{taintedTaint}},
		{Count: 1, Prefix: "small-", CPU: "2", Labels: map[string]string{"role": "preempt"}, Taints: []v1.Taint{preemptTaint}},
	}
	for _, g := range groups {
		nodes := hollow.New(c.Client, g)
		go func() {
			if err := nodes.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("hollow nodes %s: %v", g.Prefix, err)
			}
		}()
	}
	waitFor(t, "hollow nodes registered", func() bool {
		l, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == numNodes
	})
	return c.Client
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
}

func namespace(t *testing.T, client kubernetes.Interface, name string) string {
	t.Helper()
	_, err := client.CoreV1().Namespaces().Create(context.Background(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

func newPod(name string, lbls map[string]string, cpu string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}
	}
	return p
}

func create(t *testing.T, client kubernetes.Interface, ns string, p *v1.Pod) {
	t.Helper()
	if _, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, p.Name, err)
	}
}

// boundNode waits until the pod is bound and returns its node.
func boundNode(t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var node string
	waitFor(t, "pod "+ns+"/"+name+" to be bound", func() bool {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		node = p.Spec.NodeName
		return node != ""
	})
	return node
}

// unschedulable waits for PodScheduled=False/Unschedulable and returns
// its message, after checking the pod stayed unbound.
func unschedulable(t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var msg string
	waitFor(t, "pod "+ns+"/"+name+" to be reported unschedulable", func() bool {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("pod %s/%s was bound to %s, want it pending", ns, name, p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
				msg = c.Message
				return true
			}
		}
		return false
	})
	return msg
}

func zoneOf(t *testing.T, node string) string {
	t.Helper()
	for _, z := range []string{"za", "zb", "zc"} {
		if strings.HasPrefix(node, z+"-") {
			return z
		}
	}
	return ""
}

func TestPlacementRules(t *testing.T) {
	client := startCluster(t)
	ctx := context.Background()

	t.Run("nodeSelector", func(t *testing.T) {
		ns := namespace(t, client, "node-selector")
		for i := 0; i < 3; i++ {
			p := newPod(fmt.Sprintf("ssd-%d", i), nil, "100m")
			p.Spec.NodeSelector = map[string]string{"disk": "ssd"}
			create(t, client, ns, p)
		}
		for i := 0; i < 3; i++ {
			if n := boundNode(t, client, ns, fmt.Sprintf("ssd-%d", i)); !strings.HasPrefix(n, "za-") {
				t.Errorf("ssd-%d bound to %s, want a disk=ssd node (za-*)", i, n)
			}
		}
	})

	t.Run("required node affinity", func(t *testing.T) {
		ns := namespace(t, client, "required-node-affinity")
		p := newPod("in-zb-or-zc", nil, "100m")
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: zoneKey, Operator: v1.NodeSelectorOpIn, Values: []string{"zb", "zc"}},
				{Key: "disk", Operator: v1.NodeSelectorOpDoesNotExist},
			}}}}}}
		create(t, client, ns, p)
		if z := zoneOf(t, boundNode(t, client, ns, p.Name)); z != "zb" && z != "zc" {
			t.Errorf("bound in zone %q, want zb or zc", z)
		}
		nowhere := newPod("nowhere", nil, "100m")
		nowhere.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: zoneKey, Operator: v1.NodeSelectorOpIn, Values: []string{"zz"}}}}}}}}
		create(t, client, ns, nowhere)
		msg := unschedulable(t, client, ns, nowhere.Name)
		if !strings.Contains(msg, "6 node(s) didn't match Pod's node affinity/selector") {
			t.Errorf("message %q does not name the node affinity", msg)
		}
	})

	t.Run("preferred node affinity", func(t *testing.T) {
		ns := namespace(t, client, "preferred-node-affinity")
		for i := 0; i < 3; i++ {
			p := newPod(fmt.Sprintf("likes-zc-%d", i), nil, "100m")
			p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{{
				Weight: 100, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: zoneKey, Operator: v1.NodeSelectorOpIn, Values: []string{"zc"}}}}}}}}
			create(t, client, ns, p)
		}
		for i := 0; i < 3; i++ {
			if z := zoneOf(t, boundNode(t, client, ns, fmt.Sprintf("likes-zc-%d", i))); z != "zc" {
				t.Errorf("likes-zc-%d bound in zone %q, want the preferred zc", i, z)
			}
		}
	})

	t.Run("pod affinity", func(t *testing.T) {
		ns := namespace(t, client, "pod-affinity")
		db := newPod("db", map[string]string{"app": "db"}, "100m")
		db.Spec.NodeSelector = map[string]string{zoneKey: "zb"}
		create(t, client, ns, db)
		boundNode(t, client, ns, "db")
		for i := 0; i < 3; i++ {
			p := newPod(fmt.Sprintf("near-db-%d", i), nil, "100m")
			p.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
				TopologyKey: zoneKey, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}}
			create(t, client, ns, p)
		}
		for i := 0; i < 3; i++ {
			if z := zoneOf(t, boundNode(t, client, ns, fmt.Sprintf("near-db-%d", i))); z != "zb" {
				t.Errorf("near-db-%d bound in zone %q, want zb with the db pod", i, z)
			}
		}
		// No pod matches: affinity cannot be satisfied (and the pod does
		// not match its own term, so it is not the first of a group).
		lonely := newPod("lonely", nil, "100m")
		lonely.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
			TopologyKey: zoneKey, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "absent"}}}}}}
		create(t, client, ns, lonely)
		if msg := unschedulable(t, client, ns, "lonely"); !strings.Contains(msg, "didn't match pod affinity rules") {
			t.Errorf("message %q does not name pod affinity", msg)
		}
	})

	t.Run("pod anti-affinity", func(t *testing.T) {
		ns := namespace(t, client, "pod-anti-affinity")
		anti := func(name string) *v1.Pod {
			p := newPod(name, map[string]string{"app": "solo"}, "100m")
			p.Spec.NodeSelector = map[string]string{zoneKey: "za"}
			p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
				TopologyKey: v1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "solo"}}}}}}
			return p
		}
		create(t, client, ns, anti("solo-0"))
		n0 := boundNode(t, client, ns, "solo-0")
		create(t, client, ns, anti("solo-1"))
		n1 := boundNode(t, client, ns, "solo-1")
		if n0 == n1 {
			t.Errorf("both anti-affine pods on %s", n0)
		}
		// Zone za has two nodes, both taken.
		create(t, client, ns, anti("solo-2"))
		if msg := unschedulable(t, client, ns, "solo-2"); !strings.Contains(msg, "2 node(s) didn't match pod anti-affinity rules") {
			t.Errorf("message %q does not count the 2 za nodes as anti-affinity rejections", msg)
		}
		// Symmetry: a pod without any affinity of its own is kept off the
		// nodes where an existing pod's anti-affinity selects it.
		intruder := newPod("intruder", map[string]string{"app": "solo"}, "100m")
		intruder.Spec.NodeSelector = map[string]string{zoneKey: "za"}
		create(t, client, ns, intruder)
		if msg := unschedulable(t, client, ns, "intruder"); !strings.Contains(msg, "didn't satisfy existing pods anti-affinity rules") {
			t.Errorf("message %q does not name existing pods' anti-affinity", msg)
		}
	})

	t.Run("taints and tolerations", func(t *testing.T) {
		ns := namespace(t, client, "taints")
		intolerant := newPod("intolerant", nil, "100m")
		intolerant.Spec.NodeSelector = map[string]string{"role": "tainted"}
		create(t, client, ns, intolerant)
		// TaintToleration filters before NodeAffinity (upstream's order), so
		// both tainted nodes count as taint rejections.
		want := fmt.Sprintf("0/%d nodes are available: 2 node(s) had untolerated taint(s), 6 node(s) didn't match Pod's node affinity/selector. "+
			"preemption: 0/%d nodes are available: %d Preemption is not helpful for scheduling.", numNodes, numNodes, numNodes)
		if msg := unschedulable(t, client, ns, "intolerant"); msg != want {
			t.Errorf("PodScheduled message\n got %q\nwant %q", msg, want)
		}
		tolerant := newPod("tolerant", nil, "100m")
		tolerant.Spec.NodeSelector = map[string]string{"role": "tainted"}
		tolerant.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "infra", Effect: v1.TaintEffectNoSchedule}}
		create(t, client, ns, tolerant)
		if n := boundNode(t, client, ns, "tolerant"); n != "tainted-0" {
			t.Errorf("tolerant pod bound to %s, want tainted-0", n)
		}
	})

	t.Run("topology spread across zones", func(t *testing.T) {
		ns := namespace(t, client, "spread")
		perZone := map[string]int{}
		for i := 0; i < 6; i++ {
			p := newPod(fmt.Sprintf("spread-%d", i), map[string]string{"app": "spread"}, "100m")
			p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: zoneKey, WhenUnsatisfiable: v1.DoNotSchedule,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}}}}
			create(t, client, ns, p)
			// One at a time, so each placement sees the previous ones.
			perZone[zoneOf(t, boundNode(t, client, ns, p.Name))]++
		}
		for _, z := range []string{"za", "zb", "zc"} {
			if perZone[z] != 2 {
				t.Errorf("pods per zone %v, want 2 in each of za, zb, zc", perZone)
				break
			}
		}
	})

	t.Run("resource exhaustion", func(t *testing.T) {
		ns := namespace(t, client, "exhaustion")
		create(t, client, ns, newPod("huge", nil, "1000"))
		msg := unschedulable(t, client, ns, "huge")
		want := fmt.Sprintf("0/%d nodes are available: 2 node(s) had untolerated taint(s), 6 Insufficient cpu. "+
			"preemption: 0/%d nodes are available: 8 Preemption is not helpful for scheduling.", numNodes, numNodes)
		if msg != want {
			t.Errorf("PodScheduled message\n got %q\nwant %q", msg, want)
		}
		waitFor(t, "a FailedScheduling event for huge", func() bool {
			evs, err := client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.Reason == "FailedScheduling" && e.Regarding.Name == "huge" && e.Type == v1.EventTypeWarning {
					if e.Note != want {
						t.Errorf("event note %q, want %q", e.Note, want)
					}
					return true
				}
			}
			return false
		})
	})

	t.Run("preemption", func(t *testing.T) {
		ns := namespace(t, client, "preemption")
		for _, pc := range []*schedulingv1.PriorityClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "it-low"}, Value: 10},
			{ObjectMeta: metav1.ObjectMeta{Name: "it-high"}, Value: 1000},
		} {
			if _, err := client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating priority class %s: %v", pc.Name, err)
			}
		}
		onSmall := func(name, class string) *v1.Pod {
			p := newPod(name, nil, "1500m")
			p.Spec.PriorityClassName = class
			p.Spec.NodeSelector = map[string]string{"role": "preempt"}
			p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "preempt", Effect: v1.TaintEffectNoSchedule}}
			return p
		}
		create(t, client, ns, onSmall("low", "it-low"))
		if n := boundNode(t, client, ns, "low"); n != "small-0" {
			t.Fatalf("low bound to %s, want small-0", n)
		}
		low, err := client.CoreV1().Pods(ns).Get(ctx, "low", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if low.Spec.Priority == nil || *low.Spec.Priority != 10 {
			t.Fatalf("low pod priority %v, want 10 resolved from its PriorityClass", low.Spec.Priority)
		}
		create(t, client, ns, onSmall("high", "it-high"))
		if n := boundNode(t, client, ns, "high"); n != "small-0" {
			t.Errorf("high bound to %s, want small-0", n)
		}
		// The victim went through graceful deletion (the hollow node then
		// finished it); the same UID must not still be there.
		waitFor(t, "the low-priority pod to be gone", func() bool {
			p, err := client.CoreV1().Pods(ns).Get(ctx, "low", metav1.GetOptions{})
			return apierrors.IsNotFound(err) || (err == nil && p.UID != low.UID)
		})
		waitFor(t, "a Preempted event for low", func() bool {
			evs, err := client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.Reason == "Preempted" && e.Regarding.Name == "low" {
					return true
				}
			}
			return false
		})
	})
}
