package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/informers/admissionregistration"
	"k8s.io/client-go/informers/apiserverinternal"
	"k8s.io/client-go/informers/apps"
	"k8s.io/client-go/informers/autoscaling"
	"k8s.io/client-go/informers/batch"
	"k8s.io/client-go/informers/certificates"
	"k8s.io/client-go/informers/coordination"
	"k8s.io/client-go/informers/core"
	"k8s.io/client-go/informers/discovery"
	"k8s.io/client-go/informers/events"
	"k8s.io/client-go/informers/extensions"
	"k8s.io/client-go/informers/flowcontrol"
	"k8s.io/client-go/informers/internalinterfaces"
	"k8s.io/client-go/informers/lifecycle"
	"k8s.io/client-go/informers/networking"
	"k8s.io/client-go/informers/node"
	"k8s.io/client-go/informers/policy"
	"k8s.io/client-go/informers/rbac"
	"k8s.io/client-go/informers/resource"
	"k8s.io/client-go/informers/scheduling"
	"k8s.io/client-go/informers/storage"
	"k8s.io/client-go/informers/storagemigration"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/apiserver/localwatch"
	"skiff.dev/skiff/internal/server"
)

// sharedInformers is the one informer factory of skiff server's in-process
// controller manager and scheduler. Upstream runs them as two processes
// with a watch and a cache each for pods, nodes, ReplicaSets and the rest;
// in one process that is every event encoded, sent and decoded twice and
// every object cached twice (of the CPU of a 10,000-pod scale-up, the
// clients' watch decoding was 7%).
//
// Its typed informers (factory.Core().V1().Pods() and the like) list and
// watch the API server's stores directly (server.LocalWatch,
// internal/apiserver/localwatch): deep copies of the watch cache's objects
// instead of protobuf encoded by the server and decoded by client-go. Types
// no store serves, and everything when SKIFF_INPROCESS_INFORMERS=http is
// set, go through the in-process client as before.
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

// informersModeEnv names the switch back to the HTTP path for the shared
// informers: "http" lists and watches through the in-process client.
const informersModeEnv = "SKIFF_INPROCESS_INFORMERS"

// take returns the shared factory for component, or nil when component
// already had it once. The informers run until ctx (the server's) ends,
// whatever channel a component passes to Start.
func (s *sharedInformers) take(ctx context.Context, srv *server.Server, rc *rest.Config, component string) (informers.SharedInformerFactory, error) {
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
		var local *localwatch.Source
		switch mode := os.Getenv(informersModeEnv); mode {
		case "", "local":
			if local, err = srv.LocalWatch(); err != nil {
				return nil, fmt.Errorf("building shared informers: %w", err)
			}
		case "http":
		default:
			return nil, fmt.Errorf("building shared informers: %s=%q: want \"local\" or \"http\"", informersModeEnv, mode)
		}
		s.factory = ownedFactory{informers.NewSharedInformerFactory(kube, 0), ctx.Done(), local}
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
//
// With local set, the informers its typed accessors (Core(), Apps() ...)
// build list and watch through local for every type local serves.
// InformerFor called by a component itself keeps the component's
// constructor (it may filter), and ForResource keeps the client.
type ownedFactory struct {
	informers.SharedInformerFactory
	stop  <-chan struct{}
	local *localwatch.Source
}

func (f ownedFactory) Start(<-chan struct{}) { f.SharedInformerFactory.Start(f.stop) }

func (f ownedFactory) Shutdown() {}

// typed is the factory the typed accessors build their informers on.
func (f ownedFactory) typed() internalinterfaces.SharedInformerFactory {
	if f.local == nil {
		return f.SharedInformerFactory
	}
	return localFactory{f}
}

// localFactory builds the typed accessors' informers on the local source.
type localFactory struct{ ownedFactory }

// InformerFor registers (or finds) obj's informer in the shared factory,
// listing and watching through the local source when it serves obj's
// type. The accessor's own constructor, newFunc, still runs, for the
// indexers it gives the informer (it starts nothing).
func (f localFactory) InformerFor(obj runtime.Object, newFunc internalinterfaces.NewInformerFunc) cache.SharedIndexInformer {
	return f.SharedInformerFactory.InformerFor(obj, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		viaClient := newFunc(client, resync)
		lw, ok := f.local.ListerWatcher(obj, metav1.NamespaceAll)
		if !ok {
			return viaClient
		}
		return cache.NewSharedIndexInformerWithOptions(lw, obj, cache.SharedIndexInformerOptions{
			ResyncPeriod: resync,
			Indexers:     viaClient.GetIndexer().GetIndexers(),
		})
	})
}

func (f ownedFactory) Admissionregistration() admissionregistration.Interface {
	return admissionregistration.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Internal() apiserverinternal.Interface {
	return apiserverinternal.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Apps() apps.Interface { return apps.New(f.typed(), metav1.NamespaceAll, nil) }
func (f ownedFactory) Autoscaling() autoscaling.Interface {
	return autoscaling.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Batch() batch.Interface { return batch.New(f.typed(), metav1.NamespaceAll, nil) }
func (f ownedFactory) Certificates() certificates.Interface {
	return certificates.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Coordination() coordination.Interface {
	return coordination.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Core() core.Interface { return core.New(f.typed(), metav1.NamespaceAll, nil) }
func (f ownedFactory) Discovery() discovery.Interface {
	return discovery.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Events() events.Interface {
	return events.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Extensions() extensions.Interface {
	return extensions.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Flowcontrol() flowcontrol.Interface {
	return flowcontrol.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Lifecycle() lifecycle.Interface {
	return lifecycle.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Networking() networking.Interface {
	return networking.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Node() node.Interface { return node.New(f.typed(), metav1.NamespaceAll, nil) }
func (f ownedFactory) Policy() policy.Interface {
	return policy.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Rbac() rbac.Interface { return rbac.New(f.typed(), metav1.NamespaceAll, nil) }
func (f ownedFactory) Resource() resource.Interface {
	return resource.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Scheduling() scheduling.Interface {
	return scheduling.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Storage() storage.Interface {
	return storage.New(f.typed(), metav1.NamespaceAll, nil)
}
func (f ownedFactory) Storagemigration() storagemigration.Interface {
	return storagemigration.New(f.typed(), metav1.NamespaceAll, nil)
}
