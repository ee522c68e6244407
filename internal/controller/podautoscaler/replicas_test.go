package podautoscaler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// podState describes one pod of a calculator case.
type podState struct {
	phase      v1.PodPhase   // default Running
	started    time.Duration // before t0; default 10 min
	ready      *bool         // Ready condition; default true
	transition time.Duration // Ready condition last moved, before t0; default 9 min
	deleted    bool
	noRequest  bool
	usage      int64         // milli-units; -1 when the pod has no metric
	sampled    time.Duration // metric timestamp before t0
}

func boolp(b bool) *bool { return &b }

func build(states []podState, request string) ([]*v1.Pod, PodMetricsInfo) {
	var pods []*v1.Pod
	metrics := PodMetricsInfo{}
	for i, s := range states {
		name := fmt.Sprintf("p%d", i)
		if s.phase == "" {
			s.phase = v1.PodRunning
		}
		if s.started == 0 {
			s.started = 10 * time.Minute
		}
		if s.transition == 0 {
			s.transition = 9 * time.Minute
		}
		ready := s.ready == nil || *s.ready
		start := metav1.NewTime(t0.Add(-s.started))
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(request), v1.ResourceMemory: resource.MustParse(request)}}}}},
			Status: v1.PodStatus{Phase: s.phase, StartTime: &start, Conditions: []v1.PodCondition{{
				Type: v1.PodReady, Status: conditionStatus(ready), LastTransitionTime: metav1.NewTime(t0.Add(-s.transition))}}},
		}
		if s.noRequest {
			pod.Spec.Containers[0].Resources.Requests = nil
		}
		if s.deleted {
			pod.DeletionTimestamp = &start
		}
		pods = append(pods, pod)
		if s.usage >= 0 {
			metrics[name] = PodMetric{Value: s.usage, Timestamp: t0.Add(-s.sampled), Window: 30 * time.Second}
		}
	}
	return pods, metrics
}

func repeat(n int, s podState) []podState {
	out := make([]podState, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func join(lists ...[]podState) []podState {
	var out []podState
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var defaultCalc = calculator{tolerance: DefaultTolerance, cpuInitializationPeriod: DefaultCPUInitializationPeriod, readinessDelay: DefaultInitialReadinessDelay}

func TestUtilizationReplicas(t *testing.T) {
	missing := podState{usage: -1}
	cases := []struct {
		name            string
		resource        v1.ResourceName
		current, target int32
		pods            []podState
		want            int32
		wantUtilization int32
		wantErr         string
	}{
		{name: "at target", current: 3, target: 50, pods: repeat(3, podState{usage: 500}), want: 3, wantUtilization: 50},
		{name: "within tolerance up", current: 3, target: 50, pods: repeat(3, podState{usage: 540}), want: 3, wantUtilization: 54},
		{name: "within tolerance down", current: 3, target: 50, pods: repeat(3, podState{usage: 460}), want: 3, wantUtilization: 46},
		{name: "just beyond tolerance", current: 10, target: 50, pods: repeat(10, podState{usage: 560}), want: 12, wantUtilization: 56},
		{name: "double usage doubles replicas", current: 3, target: 50, pods: repeat(3, podState{usage: 1000}), want: 6, wantUtilization: 100},
		{name: "scale down", current: 5, target: 50, pods: repeat(5, podState{usage: 200}), want: 2, wantUtilization: 20},
		{name: "memory utilisation", resource: v1.ResourceMemory, current: 2, target: 50, pods: repeat(2, podState{usage: 1500}), want: 6, wantUtilization: 150},
		// One pod reports 100%, three report nothing: on a scale-up they
		// count as 0%, which brings the ratio below 1 and so cancels the
		// change (counting only the measured pod would ask for 2).
		{name: "missing metrics count as zero on scale-up", current: 4, target: 50,
			pods: join(repeat(1, podState{usage: 1000}), repeat(3, missing)), want: 4, wantUtilization: 100},
		// On a scale-down a missing pod counts as using its whole request:
		// (3×100m + 1000m) / 4000m = 32% → ceil(0.64×4) = 3, not 1.
		{name: "missing metrics count as full request on scale-down", current: 4, target: 50,
			pods: join(repeat(3, podState{usage: 100}), repeat(1, missing)), want: 3, wantUtilization: 10},
		{name: "missing on scale-down with target above 100%", current: 4, target: 200,
			pods: join(repeat(3, podState{usage: 100}), repeat(1, missing)), want: 2, wantUtilization: 10},
		// A pod still starting (within the CPU initialisation period and
		// not ready) counts as 0% on a scale-up: 2000m / 3000m = 66% →
		// ceil(1.32×3) = 4 rather than 6.
		{name: "unready pod counts as zero on scale-up", current: 3, target: 50,
			pods: join(repeat(2, podState{usage: 1000}), []podState{{usage: 1000, started: time.Minute, ready: boolp(false), transition: time.Minute}}),
			want: 4, wantUtilization: 100},
		{name: "pending pods ignored on scale-down", current: 3, target: 50,
			pods: join(repeat(2, podState{usage: 100}), []podState{{phase: v1.PodPending, usage: -1}}), want: 1, wantUtilization: 10},
		// Ready 10 s ago, a 30 s sample cannot reflect the ready pod yet.
		{name: "cpu sample taken too soon after readiness is unready", current: 3, target: 50,
			pods: join(repeat(2, podState{usage: 1000}), []podState{{usage: 3000, started: time.Minute, transition: 10 * time.Second}}),
			want: 4, wantUtilization: 100},
		// Past the initialisation period, a pod that was ready once and
		// then went unready is measured as usual.
		{name: "pod unready long after start is counted", current: 2, target: 50,
			pods: join(repeat(1, podState{usage: 1000}), []podState{{usage: 1000, ready: boolp(false), transition: 5 * time.Minute}}),
			want: 4, wantUtilization: 100},
		// Memory is not distorted by start-up, so readiness is not checked.
		{name: "memory ignores readiness", resource: v1.ResourceMemory, current: 2, target: 50,
			pods: join(repeat(1, podState{usage: 1000}), []podState{{usage: 1000, started: time.Minute, ready: boolp(false), transition: time.Minute}}),
			want: 4, wantUtilization: 100},
		{name: "deleted and failed pods ignored", current: 2, target: 50,
			pods: join(repeat(2, podState{usage: 1000}), []podState{{deleted: true, usage: 0}, {phase: v1.PodFailed, usage: -1}}),
			want: 4, wantUtilization: 100},
		{name: "no pods", current: 2, target: 50, wantErr: "no pods returned by selector"},
		{name: "only unready pods", current: 2, target: 50, pods: repeat(2, podState{phase: v1.PodPending, usage: -1}),
			wantErr: "did not receive metrics for targeted pods"},
		{name: "missing request", current: 2, target: 50, pods: []podState{{usage: 100}, {usage: 100, noRequest: true}},
			wantErr: "missing request for cpu in container c of Pod p1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.resource
			if res == "" {
				res = v1.ResourceCPU
			}
			pods, metrics := build(tc.pods, "1")
			got, err := defaultCalc.utilizationReplicas(t0, tc.current, tc.target, res, "", pods, metrics)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.replicas != tc.want || got.utilization != tc.wantUtilization {
				t.Fatalf("replicas, utilisation = %d, %d%%; want %d, %d%%", got.replicas, got.utilization, tc.want, tc.wantUtilization)
			}
		})
	}
}

func TestAverageValueReplicas(t *testing.T) {
	cases := []struct {
		name    string
		current int32
		target  int64
		pods    []podState
		want    int32
		wantAvg int64
		wantErr bool
	}{
		{name: "double", current: 2, target: 500, pods: repeat(2, podState{usage: 1000}), want: 4, wantAvg: 1000},
		{name: "within tolerance", current: 2, target: 500, pods: repeat(2, podState{usage: 520}), want: 2, wantAvg: 520},
		{name: "halve", current: 4, target: 500, pods: repeat(4, podState{usage: 250}), want: 2, wantAvg: 250},
		// Missing pods count as the target on a scale-down: (3×250 + 500)/4
		// = 312 → ceil(0.624×4) = 3.
		{name: "missing on scale-down", current: 4, target: 500, pods: join(repeat(3, podState{usage: 250}), repeat(1, podState{usage: -1})), want: 3, wantAvg: 250},
		{name: "no pods", current: 2, target: 500, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pods, metrics := build(tc.pods, "1")
			got, avg, err := defaultCalc.averageValueReplicas(t0, tc.current, tc.target, v1.ResourceCPU, pods, metrics)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (got != tc.want || avg != tc.wantAvg) {
				t.Fatalf("replicas, average = %d, %d; want %d, %d", got, avg, tc.want, tc.wantAvg)
			}
		})
	}
}
