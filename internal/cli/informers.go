package cli

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// sharedInformers is the one informer factory of skiff server's in-process
// controller manager and scheduler. Upstream runs them as two processes
// with a watch and a cache each for pods, nodes, ReplicaSets and the rest;
// in one process that is every event encoded, sent and decoded twice and
// every object cached twice (of the CPU of a 10,000-pod scale-up, the
// clients' watch decoding was 7%).
//
// Each component gets the factory on its first construction only: event
// handlers cannot be taken back from a running informer, so a component
// that skiff server's supervisor rebuilds (after a lost lease) builds a
// factory of its own rather than stacking a second set of handlers on the
// shared informers.
type sharedInformers struct {
	mu      sync.Mutex
	factory informers.SharedInformerFactory
	taken   map[string]bool
}

// take returns the shared factory for component, or nil when component
// already had it once. The informers run until ctx (the server's) ends,
// whatever channel a component passes to Start.
func (s *sharedInformers) take(ctx context.Context, rc *rest.Config, component string) (informers.SharedInformerFactory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken[component] {
		return nil, nil
	}
	if s.factory == nil {
		rc = rest.CopyConfig(rc)
		rc.UserAgent = "skiff-informers"
		kube, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("building shared informer client: %w", err)
		}
		s.factory = ownedFactory{informers.NewSharedInformerFactory(kube, 0), ctx.Done()}
	}
	if s.taken == nil {
		s.taken = map[string]bool{}
	}
	s.taken[component] = true
	return s.factory, nil
}

// ownedFactory is a factory whose informers run until stop closes: a
// component's Start(its own stop channel) starts informers it added, but
// their lifetime stays the owner's, and a component's Shutdown leaves the
// shared informers running for the others.
type ownedFactory struct {
	informers.SharedInformerFactory
	stop <-chan struct{}
}

func (f ownedFactory) Start(<-chan struct{}) { f.SharedInformerFactory.Start(f.stop) }

func (f ownedFactory) Shutdown() {}
