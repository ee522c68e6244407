package prober

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
)

// byKind records which probe kinds ran and fails startup probes until told.
type byKind struct {
	mu        sync.Mutex
	ran       map[string]int
	startupOK bool
}

func (b *byKind) Check(_ context.Context, p *v1.Probe, _ Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	kind := "readiness"
	if p.TerminationGracePeriodSeconds != nil { // marks the startup probe in this test
		kind = "startup"
	}
	b.ran[kind]++
	if kind == "startup" && !b.startupOK {
		return errors.New("not yet")
	}
	return nil
}

func (b *byKind) count(kind string) int { b.mu.Lock(); defer b.mu.Unlock(); return b.ran[kind] }

func TestStartupProbeGatesOtherProbes(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(0, 0))
	checker := &byKind{ran: map[string]int{}}
	m := NewManager(checker, clk, func(types.UID) {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	marker := int64(1)
	c := &v1.Container{Name: "app",
		StartupProbe:   &v1.Probe{PeriodSeconds: 1, FailureThreshold: 100, TerminationGracePeriodSeconds: &marker},
		ReadinessProbe: &v1.Probe{PeriodSeconds: 1, FailureThreshold: 1},
	}
	tgt := Target{PodUID: "u", ContainerID: "c1", Container: c}
	m.Ensure(ctx, tgt)
	step := func(until func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatal("timed out")
			}
			if clk.HasWaiters() {
				clk.Step(time.Second)
			}
			time.Sleep(time.Millisecond)
		}
	}
	step(func() bool { return checker.count("startup") >= 3 })
	m.Ensure(ctx, tgt)
	if m.Started("c1", c) || checker.count("readiness") != 0 {
		t.Fatalf("readiness ran (%d) or started before the startup probe passed", checker.count("readiness"))
	}
	checker.mu.Lock()
	checker.startupOK = true
	checker.mu.Unlock()
	step(func() bool { return m.Started("c1", c) })
	n := checker.count("startup")
	m.Ensure(ctx, tgt) // now readiness starts
	step(func() bool { return checker.count("readiness") >= 2 })
	if got := checker.count("startup"); got != n {
		t.Errorf("startup probe kept running after success: %d -> %d", n, got)
	}
}

func TestGRPCProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	defer srv.Stop()
	port := l.Addr().(*net.TCPAddr).Port
	svc := "db"
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	probe := &v1.Probe{ProbeHandler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: int32(port)}}}
	tgt := Target{PodIP: "127.0.0.1", Container: &v1.Container{Name: "app"}}
	check := func(p *v1.Probe) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return NetChecker{}.Check(ctx, p, tgt)
	}
	if err := check(probe); err != nil {
		t.Errorf("overall health SERVING: %v", err)
	}
	named := probe.DeepCopy()
	named.GRPC.Service = &svc
	if err := check(named); err == nil {
		t.Error("NOT_SERVING service passed")
	}
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	if err := check(named); err != nil {
		t.Errorf("SERVING service: %v", err)
	}
	closed := probe.DeepCopy()
	closed.GRPC.Port = int32(freePort(t))
	if err := check(closed); err == nil {
		t.Error("probe of a closed port passed")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
