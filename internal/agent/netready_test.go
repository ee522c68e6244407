package agent

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// statusCRI reports NetworkReady from the readyAt-th Status call on.
type statusCRI struct {
	runtimeapi.RuntimeServiceClient
	calls   atomic.Int32
	readyAt int32
}

func (s *statusCRI) Status(context.Context, *runtimeapi.StatusRequest, ...grpc.CallOption) (*runtimeapi.StatusResponse, error) {
	n := s.calls.Add(1)
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true},
		{Type: runtimeapi.NetworkReady, Status: s.readyAt > 0 && n >= s.readyAt},
	}}}, nil
}

func TestWaitNetworkReady(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := &statusCRI{readyAt: 3}
	begin := time.Now()
	waitNetworkReady(context.Background(), rt, 5*time.Second, log)
	if got := rt.calls.Load(); got != 3 {
		t.Fatalf("returned after %d Status calls, want 3 (ready on the third)", got)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("took %v for a runtime ready on the third poll", d)
	}
	// Never ready: gives up after the timeout instead of blocking the node.
	never := &statusCRI{}
	begin = time.Now()
	waitNetworkReady(context.Background(), never, 50*time.Millisecond, log)
	if d := time.Since(begin); d < 50*time.Millisecond || d > 3*time.Second {
		t.Fatalf("a never-ready runtime was waited for %v, want about 50ms", d)
	}
	if never.calls.Load() < 2 {
		t.Fatalf("polled %d times, want several", never.calls.Load())
	}
}
