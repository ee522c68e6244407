package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A scheduler whose Lease renewals fail stops with an error instead of
// idling forever without scheduling (the in-process scheduler used to
// return nil and never campaign again; `skiff server` now rebuilds it).
func TestRunReturnsErrorWhenLeaseIsLost(t *testing.T) {
	client := fake.NewClientset()
	var failRenew atomic.Bool
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failRenew.Load() {
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	s, err := New(Config{LeaderElection: LeaderElection{Enabled: true, Identity: "a",
		LeaseDuration: 600 * time.Millisecond, RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}},
		client, informers.NewSharedInformerFactory(client, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the lease to be taken", func() bool {
		l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, "kube-scheduler", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "a"
	})
	failRenew.Store(true)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lost leadership") {
			t.Fatalf("Run after losing the lease = %v, want a lost-leadership error", err)
		}
	case <-ctx.Done():
		t.Fatal("Run kept going after its lease renewals failed")
	}
}
