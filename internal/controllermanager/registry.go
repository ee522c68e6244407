package controllermanager

import (
	"context"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller/cronjob"
	"skiff.dev/skiff/internal/controller/daemonset"
	"skiff.dev/skiff/internal/controller/deployment"
	"skiff.dev/skiff/internal/controller/disruption"
	"skiff.dev/skiff/internal/controller/endpoints"
	"skiff.dev/skiff/internal/controller/endpointslice"
	"skiff.dev/skiff/internal/controller/garbagecollector"
	"skiff.dev/skiff/internal/controller/job"
	"skiff.dev/skiff/internal/controller/loadbalancer"
	"skiff.dev/skiff/internal/controller/localpath"
	"skiff.dev/skiff/internal/controller/namespace"
	"skiff.dev/skiff/internal/controller/nodeipam"
	"skiff.dev/skiff/internal/controller/nodelifecycle"
	"skiff.dev/skiff/internal/controller/podautoscaler"
	"skiff.dev/skiff/internal/controller/replicaset"
	"skiff.dev/skiff/internal/controller/resourcequota"
	"skiff.dev/skiff/internal/controller/serviceaccount"
	"skiff.dev/skiff/internal/controller/statefulset"
	"skiff.dev/skiff/internal/controller/volume"
)

// Runner is what every controller exposes: it blocks until ctx ends.
type Runner interface {
	Run(ctx context.Context, workers int) error
}

// Context carries the shared dependencies handed to every constructor.
type Context struct {
	Client    kubernetes.Interface
	Metadata  metadata.Interface
	Discovery discovery.DiscoveryInterface
	Informers informers.SharedInformerFactory
	Clock     clock.WithTicker
	Logger    *slog.Logger
	Config    Config
	// Recorder returns an event recorder reporting as component.
	Recorder func(component string) record.EventRecorder
}

// Constructor builds a controller; it may add informer event handlers but
// must not start anything.
type Constructor func(Context) (Runner, error)

// Registration describes one controller of the registry.
type Registration struct {
	New Constructor
	// Workers is the default number of workers.
	Workers int
	// DisabledByDefault controllers only run when named explicitly.
	DisabledByDefault bool
}

// DefaultRegistry returns every controller skiff knows.
func DefaultRegistry() map[string]Registration {
	return map[string]Registration{
		"replicaset": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return replicaset.NewReplicaSetController(replicaset.Config{Clock: c.Clock}, c.Client,
				f.Apps().V1().ReplicaSets(), f.Core().V1().Pods(), c.Recorder("replicaset-controller"), c.Logger)
		}},
		"replicationcontroller": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return replicaset.NewReplicationManager(replicaset.Config{Clock: c.Clock}, c.Client,
				f.Core().V1().ReplicationControllers(), f.Core().V1().Pods(), c.Recorder("replication-controller"), c.Logger)
		}},
		"deployment": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return deployment.New(deployment.Config{Clock: c.Clock}, c.Client,
				f.Apps().V1().Deployments(), f.Apps().V1().ReplicaSets(), f.Core().V1().Pods(), c.Recorder("deployment-controller"), c.Logger)
		}},
		"endpoints": {Workers: 5, New: func(c Context) (Runner, error) {
			return endpoints.New(c.Client, c.Informers, c.Logger)
		}},
		"endpointslice": {Workers: 5, New: func(c Context) (Runner, error) {
			return endpointslice.New(c.Client, c.Informers, c.Logger)
		}},
		"serviceaccount": {Workers: 1, New: func(c Context) (Runner, error) {
			return serviceaccount.New(c.Client, c.Informers, c.Logger)
		}},
		"namespace": {Workers: 5, New: func(c Context) (Runner, error) {
			return namespace.New(c.Client, c.Metadata, c.Discovery, c.Informers, c.Logger)
		}},
		"nodelifecycle": {Workers: 1, New: func(c Context) (Runner, error) {
			return nodelifecycle.New(nodelifecycle.Config{Clock: c.Clock}, c.Client, c.Informers, c.Logger)
		}},
		"garbagecollector": {Workers: 5, New: func(c Context) (Runner, error) {
			// The busiest resources, which other controllers watch through
			// the same factory anyway: one watch each instead of two.
			f := c.Informers
			shared := map[schema.GroupVersionResource]cache.SharedIndexInformer{
				corev1.SchemeGroupVersion.WithResource("pods"):           f.Core().V1().Pods().Informer(),
				corev1.SchemeGroupVersion.WithResource("nodes"):          f.Core().V1().Nodes().Informer(),
				coordinationv1.SchemeGroupVersion.WithResource("leases"): f.Coordination().V1().Leases().Informer(),
				appsv1.SchemeGroupVersion.WithResource("replicasets"):    f.Apps().V1().ReplicaSets().Informer(),
			}
			return garbagecollector.New(garbagecollector.Config{Clock: c.Clock, Shared: shared}, c.Metadata, c.Discovery, c.Logger)
		}},
		"disruption": {Workers: 5, New: func(c Context) (Runner, error) {
			return disruption.New(disruption.Config{Clock: c.Clock}, c.Client, c.Informers, c.Logger)
		}},
		"job": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return job.New(job.Config{Clock: c.Clock}, c.Client, f.Batch().V1().Jobs(), f.Core().V1().Pods(), c.Recorder("job-controller"), c.Logger)
		}},
		"ttl-after-finished": {Workers: 5, New: func(c Context) (Runner, error) {
			return job.NewTTL(c.Clock, c.Client, c.Informers.Batch().V1().Jobs(), c.Logger)
		}},
		"statefulset": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return statefulset.New(statefulset.Config{Clock: c.Clock}, c.Client, f.Apps().V1().StatefulSets(), f.Core().V1().Pods(),
				f.Core().V1().PersistentVolumeClaims(), f.Apps().V1().ControllerRevisions(), c.Recorder("statefulset-controller"), c.Logger)
		}},
		"resourcequota": {Workers: 5, New: func(c Context) (Runner, error) {
			mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
			return resourcequota.New(resourcequota.Config{Clock: c.Clock, Metadata: c.Metadata, Mapper: mapper}, c.Client, c.Informers, c.Logger)
		}},
		"daemonset": {Workers: 2, New: func(c Context) (Runner, error) {
			f := c.Informers
			return daemonset.New(daemonset.Config{Clock: c.Clock}, c.Client, f.Apps().V1().DaemonSets(), f.Core().V1().Pods(),
				f.Core().V1().Nodes(), f.Apps().V1().ControllerRevisions(), c.Recorder("daemonset-controller"), c.Logger)
		}},
		"persistentvolume-binder": {Workers: 5, New: func(c Context) (Runner, error) {
			return volume.New(c.Client, c.Informers, c.Logger)
		}},
		"local-path-provisioner": {Workers: 2, New: func(c Context) (Runner, error) {
			return localpath.New(localpath.Config{}, c.Client, c.Informers, c.Logger)
		}},
		"cronjob": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			return cronjob.New(cronjob.Config{Clock: c.Clock}, c.Client, f.Batch().V1().CronJobs(), f.Batch().V1().Jobs(), c.Recorder("cronjob-controller"), c.Logger)
		}},
		"loadbalancer": {Workers: 2, New: func(c Context) (Runner, error) {
			return loadbalancer.New(loadbalancer.Config{AddressPool: c.Config.LoadBalancerAddressPool}, c.Client, c.Informers, c.Recorder("loadbalancer-controller"), c.Logger)
		}},
		"nodeipam": {Workers: 1, New: func(c Context) (Runner, error) {
			return nodeipam.New(nodeipam.Config{ClusterCIDR: c.Config.ClusterCIDR}, c.Client, c.Informers, c.Logger)
		}},
		"horizontalpodautoscaling": {Workers: 5, New: func(c Context) (Runner, error) {
			f := c.Informers
			mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
			return podautoscaler.New(podautoscaler.Config{Clock: c.Clock, Mapper: mapper, Scales: podautoscaler.NewScaleClient(c.Client, c.Discovery, mapper),
				Metrics: podautoscaler.MetricsForKube(c.Client)}, c.Client, f.Autoscaling().V2().HorizontalPodAutoscalers(), f.Core().V1().Pods(),
				c.Recorder("horizontal-pod-autoscaler"), c.Logger)
		}},
	}
}
