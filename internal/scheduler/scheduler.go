// Package scheduler is skiff's kube-scheduler: it watches pods with no
// spec.nodeName whose spec.schedulerName is its own, places each on a node
// with the plugin framework (see framework/ and plugins/), and binds it
// through the pods/binding subresource.
//
// Pipeline (one goroutine schedules, binding is asynchronous):
//
//	informers ──> queue (active / backoff / unschedulable)
//	                │ Pop
//	                v
//	cache ──UpdateSnapshot──> Algorithm.Schedule (PreFilter, Filter on a
//	                │          sample of nodes, PreScore, Score, select)
//	                │ no fit: PostFilter (preemption), FailedScheduling
//	                │         event, PodScheduled=False, back to the queue
//	                v
//	cache.AssumePod ─> Reserve ─> Permit ─> go PreBind ─> Bind ─> FinishBinding
//	                                   (failure: Unreserve, ForgetPod, requeue)
//
// Contract: New registers informer handlers on the given factory; Run
// starts the factory, waits for caches, optionally wins a
// coordination.k8s.io Lease (kube-system/kube-scheduler), and schedules
// until ctx ends. Everything reaches the cluster through the
// kubernetes.Interface it is given, so tests use client-go's fake
// clientset and integration tests a real API server.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/gopool"
	schedcache "skiff.dev/skiff/internal/scheduler/cache"
	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/podtopologyspread"
	"skiff.dev/skiff/internal/scheduler/queue"
)

// DefaultSchedulerName is the name pods ask for by default.
const DefaultSchedulerName = v1.DefaultSchedulerName

// LeaderElection configures the Lease-based leader election.
type LeaderElection struct {
	Enabled bool
	// Namespace/Name of the Lease; default kube-system/kube-scheduler.
	Namespace, Name string
	// Identity defaults to hostname_uuid.
	Identity                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration // 15s, 10s, 2s
}

// Config configures the scheduler. The zero value plus defaults works.
type Config struct {
	SchedulerName            string // default "default-scheduler"
	PercentageOfNodesToScore int32  // 0: upstream's adaptive default
	// DefaultConstraints for pods without topology spread constraints;
	// nil means upstream's system defaults.
	DefaultConstraints []v1.TopologySpreadConstraint
	InitialBackoff     time.Duration // default 1 s
	MaxBackoff         time.Duration // default 10 s
	MaxInUnschedulable time.Duration // default 5 min
	AssumedPodTTL      time.Duration // 0: never expire (upstream default)
	DisablePreemption  bool
	Parallelism        int // default GOMAXPROCS
	Clock              clock.Clock
	// Rand breaks score ties; default seeded from the clock.
	Rand           *rand.Rand
	LeaderElection LeaderElection
	// ScheduledEventQPS and ScheduledEventBurst bound the Normal
	// "Scheduled" events, one per bound pod and each an API write (a
	// quarter of the writes of a pod created, bound and started): a token
	// bucket of ScheduledEventBurst refilled at ScheduledEventQPS, so a
	// few pods each get theirs and a 10,000-pod Deployment gets a sample.
	// Defaults 20/s and 200; a negative QPS records every one, as
	// kube-scheduler does. FailedScheduling events are never limited.
	ScheduledEventQPS   float32
	ScheduledEventBurst int
}

// Defaults of Config.ScheduledEventQPS and ScheduledEventBurst.
const (
	DefaultScheduledEventQPS   = 20
	DefaultScheduledEventBurst = 200
)

// Scheduler is a running scheduler.
type Scheduler struct {
	cfg      Config
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	log      *slog.Logger
	cache    *schedcache.Cache
	queue    *queue.Queue
	fwk      *framework.Framework
	algo     *Algorithm
	snapshot *framework.Snapshot
	handle   *framework.BasicHandle
	// binders run the binding cycles on reusable goroutines that keep
	// their grown stacks (internal/gopool): a new goroutine per pod grew
	// its stack in client-go's request path (runtime.copystack was
	// 0.15-0.21 s of the 0.7 s of bind CPU per 10,000 pods). Go never
	// waits, so a slow API server does not queue bindings behind each
	// other.
	binders *gopool.Pool

	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder
	// scheduledEvents admits "Scheduled" events; nil admits all.
	scheduledEvents flowcontrol.RateLimiter
	namespaces      atomic.Pointer[map[string]labels.Set]
	// spreadOwners counts events of Services, ReplicationControllers,
	// ReplicaSets and StatefulSets: PodTopologySpread reuses a default
	// selector until it moves (podtopologyspread.Listers.Generation).
	spreadOwners atomic.Uint64
	synced       []cache.InformerSynced
}

// New builds a scheduler and registers its informer handlers.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Scheduler, error) {
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Rand == nil {
		seed := uint64(cfg.Clock.Now().UnixNano())
		cfg.Rand = rand.New(rand.NewPCG(seed, seed>>1))
	}
	if cfg.PercentageOfNodesToScore < 0 || cfg.PercentageOfNodesToScore > 100 {
		return nil, fmt.Errorf("percentageOfNodesToScore %d is not in [0, 100]", cfg.PercentageOfNodesToScore)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{cfg: cfg, client: client, factory: factory, log: logger.With("component", "scheduler"),
		cache: schedcache.New(cfg.Clock, cfg.AssumedPodTTL), snapshot: &framework.Snapshot{},
		binders: gopool.New(16, 10*time.Second)}
	empty := map[string]labels.Set{}
	s.namespaces.Store(&empty)

	s.broadcaster = events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	s.recorder = s.broadcaster.NewRecorder(scheme.Scheme, cfg.SchedulerName)
	if cfg.ScheduledEventQPS == 0 {
		cfg.ScheduledEventQPS = DefaultScheduledEventQPS
	}
	if cfg.ScheduledEventBurst <= 0 {
		cfg.ScheduledEventBurst = DefaultScheduledEventBurst
	}
	if cfg.ScheduledEventQPS > 0 {
		s.scheduledEvents = flowcontrol.NewTokenBucketRateLimiterWithClock(cfg.ScheduledEventQPS, cfg.ScheduledEventBurst, cfg.Clock)
	}
	s.cfg = cfg

	par := framework.Parallelizer{Workers: cfg.Parallelism}
	s.handle = &framework.BasicHandle{
		Client: client, Recorder: s.recorder, Snap: s.snapshot, Par: par,
		Namespaces: func() map[string]labels.Set { return *s.namespaces.Load() },
	}
	core := factory.Core().V1()
	deps := PluginDeps{
		PVCs: core.PersistentVolumeClaims().Lister(), PVs: core.PersistentVolumes().Lister(),
		StorageClasses: factory.Storage().V1().StorageClasses().Lister(),
		PDBs:           factory.Policy().V1().PodDisruptionBudgets().Lister(),
		SpreadListers: podtopologyspread.Listers{
			Services:               core.Services().Lister(),
			ReplicationControllers: core.ReplicationControllers().Lister(),
			ReplicaSets:            factory.Apps().V1().ReplicaSets().Lister(),
			StatefulSets:           factory.Apps().V1().StatefulSets().Lister(),
			Generation:             s.spreadOwners.Load,
		},
		DefaultConstraints: cfg.DefaultConstraints,
		DisablePreemption:  cfg.DisablePreemption,
	}
	s.fwk = framework.NewFramework(DefaultPlugins(s.handle, deps), DefaultScoreWeights, par)
	s.handle.Fwk = s.fwk
	s.queue = queue.New(cfg.Clock, queue.Options{
		InitialBackoff: cfg.InitialBackoff, MaxBackoff: cfg.MaxBackoff,
		MaxInUnschedulable: cfg.MaxInUnschedulable, PluginEvents: s.fwk.EventsToRegister(),
	})
	s.algo = &Algorithm{
		Framework: s.fwk, PercentageOfNodesToScore: cfg.PercentageOfNodesToScore, Parallelizer: par,
		Nominated: s.queue.NominatedPodsForNode, HasNominated: s.queue.HasNominatedPods, Rand: cfg.Rand,
	}
	if err := s.registerHandlers(); err != nil {
		return nil, fmt.Errorf("registering informer handlers: %w", err)
	}
	return s, nil
}

// Queue exposes the scheduling queue (for tests and metrics).
func (s *Scheduler) Queue() *queue.Queue { return s.queue }

// Informers is the factory the scheduler registered its handlers on.
func (s *Scheduler) Informers() informers.SharedInformerFactory { return s.factory }

// Cache exposes the scheduler cache (for tests and metrics).
func (s *Scheduler) Cache() *schedcache.Cache { return s.cache }

// Run starts informers, waits for them, and schedules until ctx ends,
// behind leader election when configured.
func (s *Scheduler) Run(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("waiting for scheduler informers to sync: %w", ctx.Err())
	}
	s.broadcaster.StartRecordingToSink(ctx.Done())
	defer s.broadcaster.Shutdown()
	if !s.cfg.LeaderElection.Enabled {
		s.run(ctx)
		return nil
	}
	return s.runLeaderElected(ctx)
}

func (s *Scheduler) runLeaderElected(ctx context.Context) error {
	le := s.cfg.LeaderElection
	if le.Namespace == "" {
		le.Namespace = metav1.NamespaceSystem
	}
	if le.Name == "" {
		le.Name = "kube-scheduler"
	}
	if le.Identity == "" {
		host, _ := os.Hostname()
		le.Identity = host + "_" + string(uuid.NewUUID())
	}
	if le.LeaseDuration == 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = 2 * time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     s.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	lost := false
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: le.LeaseDuration, RenewDeadline: le.RenewDeadline, RetryPeriod: le.RetryPeriod,
		ReleaseOnCancel: true, Name: le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				s.log.Info("became leader", "identity", le.Identity)
				s.run(ctx)
			},
			OnStoppedLeading: func() {
				s.log.Info("stopped leading", "identity", le.Identity)
				if ctx.Err() == nil {
					lost = true
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating leader elector: %w", err)
	}
	elector.Run(ctx)
	// Like kube-scheduler, a scheduler that lost its Lease stops: its
	// queue and assumed pods may be stale once another instance has led.
	// `skiff server` builds a fresh one and campaigns again; a standalone
	// `skiff scheduler` exits with this error.
	if lost {
		return fmt.Errorf("lost leadership of lease %s/%s", le.Namespace, le.Name)
	}
	return nil
}

func (s *Scheduler) run(ctx context.Context) {
	go s.queue.Run(ctx)
	go s.cache.Run(ctx, s.cfg.Clock)
	for ctx.Err() == nil {
		s.ScheduleOne(ctx)
	}
}

// ScheduleOne pops one pod and runs a scheduling cycle for it. Exposed so
// tests can step the scheduler deterministically.
func (s *Scheduler) ScheduleOne(ctx context.Context) {
	qpi, err := s.queue.Pop(ctx)
	if err != nil {
		return
	}
	pod := qpi.Pod
	if pod.DeletionTimestamp != nil || s.cache.IsAssumedPod(pod) {
		s.queue.Done(pod.UID)
		return
	}
	cycle := s.queue.SchedulingCycle()
	s.cache.UpdateSnapshot(s.snapshot)
	state := framework.NewCycleState()
	result, err := s.algo.Schedule(ctx, state, qpi.PodInfo, s.snapshot)
	if err != nil {
		nominated := ""
		var fitErr *FitError
		switch {
		case errors.As(err, &fitErr):
			qpi.UnschedulablePlugins = fitErr.Diagnosis.UnschedulablePlugins
			if s.fwk.HasPostFilter() {
				r, st := s.fwk.RunPostFilterPlugins(ctx, state, qpi.PodInfo, fitErr.Diagnosis.NodeToStatus)
				switch {
				case st.Code() == framework.Error:
					s.podLog(pod).Error("preemption failed", "err", st.AsError())
				case st.IsSuccess() && r != nil:
					nominated = r.NominatedNodeName
				default:
					fitErr.Diagnosis.PostFilterMsg = st.Message()
				}
			}
		case errors.Is(err, ErrNoNodesAvailable):
			qpi.UnschedulablePlugins = sets.New("NoNodes")
		}
		s.handleFailure(ctx, qpi, err, nominated, cycle)
		return
	}
	assumed, api := assume(qpi.PodInfo, result.SuggestedHost)
	if err := s.cache.AssumePodInfo(api); err != nil {
		s.handleFailure(ctx, qpi, fmt.Errorf("assuming pod: %w", err), "", cycle)
		return
	}
	if st := s.fwk.RunReservePluginsReserve(ctx, state, assumed, result.SuggestedHost); !st.IsSuccess() {
		s.fwk.RunReservePluginsUnreserve(ctx, state, assumed, result.SuggestedHost)
		_ = s.cache.ForgetPod(assumed)
		s.handleFailure(ctx, qpi, fmt.Errorf("running reserve plugins: %w", st.AsError()), "", cycle)
		return
	}
	if st := s.fwk.RunPermitPlugins(ctx, state, assumed, result.SuggestedHost); !st.IsSuccess() {
		s.fwk.RunReservePluginsUnreserve(ctx, state, assumed, result.SuggestedHost)
		_ = s.cache.ForgetPod(assumed)
		s.handleFailure(ctx, qpi, fmt.Errorf("running permit plugins: %w", st.AsError()), "", cycle)
		return
	}
	s.queue.Done(pod.UID)
	s.queue.DeleteNominatedPodIfExists(pod)
	host := result.SuggestedHost
	s.binders.Go(func() { s.bind(ctx, state, qpi, assumed, host) })
}

// assume returns the pod placed on host and its PodInfo. The assumed pod
// is a shallow copy of the informer's pod with spec.nodeName set: it
// shares the rest, which nothing in the scheduler writes (informer objects
// are read-only), where a deep copy per pod cost 0.13 s in the 10,000-pod
// profile. The PodInfo is the queued one's (requests and affinity terms do
// not depend on the node) for the assumed pod, so the cache does not
// recompute it.
func assume(pi *framework.PodInfo, host string) (*v1.Pod, *framework.PodInfo) {
	pod := *pi.Pod
	pod.Spec.NodeName = host
	// An identity of its own: if this binding fails, the pod's next
	// assumed copy is a different cache entry (see PodInfo.ident).
	api := pi.WithNewIdentity()
	api.Pod = &pod
	return &pod, api
}

// podLog is the logger for messages about one pod (built when needed:
// the success path logs nothing).
func (s *Scheduler) podLog(pod *v1.Pod) *slog.Logger {
	return s.log.With("pod", pod.Name, "namespace", pod.Namespace)
}

func (s *Scheduler) bind(ctx context.Context, state *framework.CycleState, qpi *queue.QueuedPodInfo, assumed *v1.Pod, host string) {
	st := s.fwk.RunPreBindPlugins(ctx, state, assumed, host)
	if st.IsSuccess() {
		st = s.fwk.RunBindPlugins(ctx, state, assumed, host)
	}
	if !st.IsSuccess() {
		s.fwk.RunReservePluginsUnreserve(ctx, state, assumed, host)
		log := s.podLog(assumed)
		if err := s.cache.ForgetPod(assumed); err != nil {
			log.Error("forgetting assumed pod", "err", err)
		}
		log.Info("binding failed", "node", host, "err", st.AsError())
		qpi.UnschedulablePlugins = nil
		s.handleFailure(ctx, qpi, fmt.Errorf("binding rejected: %w", st.AsError()), "", s.queue.SchedulingCycle())
		// A failed bind frees room: let waiting pods retry.
		s.queue.MoveAllToActiveOrBackoffQueue(framework.ClusterEvent{Resource: framework.KindAssignedPod, ActionType: framework.Delete}, nil)
		return
	}
	_ = s.cache.FinishBinding(assumed)
	if s.scheduledEvents != nil && !s.scheduledEvents.TryAccept() {
		return
	}
	s.recorder.Eventf(assumed, nil, v1.EventTypeNormal, "Scheduled", "Binding", "Successfully assigned %v/%v to %v", assumed.Namespace, assumed.Name, host)
}

// handleFailure records the failure (event, PodScheduled=False, nominated
// node) and requeues the pod.
func (s *Scheduler) handleFailure(ctx context.Context, qpi *queue.QueuedPodInfo, err error, nominated string, cycle int64) {
	pod := qpi.Pod
	reason := v1.PodReasonUnschedulable
	var fitErr *FitError
	if !errors.As(err, &fitErr) && !errors.Is(err, ErrNoNodesAvailable) {
		reason = v1.PodReasonSchedulerError
	}
	msg := err.Error()
	s.log.Info("unable to schedule pod", "pod", pod.Name, "namespace", pod.Namespace, "reason", reason, "err", msg)
	if nominated != "" {
		np := pod.DeepCopy()
		np.Status.NominatedNodeName = nominated
		s.queue.AddNominatedPod(framework.NewPodInfo(np), nominated)
	}
	s.queue.AddUnschedulableIfNotPresent(qpi, cycle)
	s.recorder.Eventf(pod, nil, v1.EventTypeWarning, "FailedScheduling", "Scheduling", "%s", msg)
	if err := s.patchStatus(ctx, pod, reason, msg, nominated); err != nil {
		s.log.Error("updating pod status", "pod", pod.Name, "namespace", pod.Namespace, "err", err)
	}
}

// patchStatus sets PodScheduled=False (and nominatedNodeName) unless the
// pod already says exactly that.
func (s *Scheduler) patchStatus(ctx context.Context, pod *v1.Pod, reason, msg, nominated string) error {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == reason && c.Message == msg &&
			(nominated == "" || pod.Status.NominatedNodeName == nominated) {
			return nil
		}
	}
	status := map[string]any{
		"conditions": []map[string]any{{
			"type": v1.PodScheduled, "status": v1.ConditionFalse, "reason": reason, "message": msg,
			"lastTransitionTime": metav1.NewTime(s.cfg.Clock.Now()).Rfc3339Copy(),
		}},
	}
	if nominated != "" {
		status["nominatedNodeName"] = nominated
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("encoding status patch: %w", err)
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patching status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func (s *Scheduler) responsible(pod *v1.Pod) bool {
	return pod.Spec.SchedulerName == s.cfg.SchedulerName || (pod.Spec.SchedulerName == "" && s.cfg.SchedulerName == DefaultSchedulerName)
}

func terminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

func podFromObj(obj any) *v1.Pod {
	switch t := obj.(type) {
	case *v1.Pod:
		return t
	case cache.DeletedFinalStateUnknown:
		p, _ := t.Obj.(*v1.Pod)
		return p
	}
	return nil
}

func nodeFromObj(obj any) *v1.Node {
	switch t := obj.(type) {
	case *v1.Node:
		return t
	case cache.DeletedFinalStateUnknown:
		n, _ := t.Obj.(*v1.Node)
		return n
	}
	return nil
}

var (
	assignedPodAdd    = framework.ClusterEvent{Resource: framework.KindAssignedPod, ActionType: framework.Add}
	assignedPodUpdate = framework.ClusterEvent{Resource: framework.KindAssignedPod, ActionType: framework.UpdatePodLabel}
	assignedPodDelete = framework.ClusterEvent{Resource: framework.KindAssignedPod, ActionType: framework.Delete}
)

// sameLabels is reflect.DeepEqual for two label maps (nil differs from
// empty), without reflection: it runs for every update of a bound pod.
func sameLabels(a, b map[string]string) bool {
	return (a == nil) == (b == nil) && maps.Equal(a, b)
}

func (s *Scheduler) registerHandlers() error {
	core := s.factory.Core().V1()
	podInf := core.Pods().Informer()
	_, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			pod := podFromObj(obj)
			switch {
			case pod == nil:
			case pod.Spec.NodeName != "":
				if terminal(pod) {
					return
				}
				if err := s.cache.AddPod(pod); err != nil {
					s.log.Error("adding pod to cache", "pod", pod.Name, "err", err)
				}
				s.queue.DeleteNominatedPodIfExists(pod)
				s.queue.MoveAllToActiveOrBackoffQueue(assignedPodAdd, nil)
			case s.responsible(pod) && !terminal(pod):
				s.queue.Add(pod)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, pod := podFromObj(oldObj), podFromObj(newObj)
			if old == nil || pod == nil {
				return
			}
			if pod.Spec.NodeName != "" {
				if old.Spec.NodeName == "" {
					s.queue.Delete(old)
					if err := s.cache.AddPod(pod); err != nil {
						s.log.Error("adding bound pod to cache", "pod", pod.Name, "err", err)
					}
					s.queue.MoveAllToActiveOrBackoffQueue(assignedPodAdd, nil)
					return
				}
				if terminal(pod) {
					_ = s.cache.RemovePod(pod)
					s.queue.MoveAllToActiveOrBackoffQueue(assignedPodDelete, nil)
					return
				}
				if err := s.cache.UpdatePod(old, pod); err != nil {
					s.log.Error("updating pod in cache", "pod", pod.Name, "err", err)
				}
				if !sameLabels(old.Labels, pod.Labels) {
					s.queue.MoveAllToActiveOrBackoffQueue(assignedPodUpdate, nil)
				}
				return
			}
			if !s.responsible(pod) || s.cache.IsAssumedPod(pod) {
				return
			}
			if terminal(pod) {
				s.queue.Delete(pod)
				return
			}
			s.queue.Update(old, pod)
		},
		DeleteFunc: func(obj any) {
			pod := podFromObj(obj)
			if pod == nil {
				return
			}
			if pod.Spec.NodeName != "" {
				_ = s.cache.RemovePod(pod)
				s.queue.MoveAllToActiveOrBackoffQueue(assignedPodDelete, nil)
				return
			}
			s.queue.Delete(pod)
			// An assumed pod deleted before its binding was observed.
			if s.cache.IsAssumedPod(pod) {
				_ = s.cache.RemovePod(pod)
			}
		},
	})
	if err != nil {
		return err
	}
	nodeInf := core.Nodes().Informer()
	_, err = nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n := nodeFromObj(obj); n != nil {
				s.cache.AddNode(n)
				s.queue.MoveAllToActiveOrBackoffQueue(framework.ClusterEvent{Resource: framework.KindNode, ActionType: framework.Add}, nil)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, n := nodeFromObj(oldObj), nodeFromObj(newObj)
			if old == nil || n == nil {
				return
			}
			s.cache.UpdateNode(old, n)
			if a := nodeChange(old, n); a != 0 {
				s.queue.MoveAllToActiveOrBackoffQueue(framework.ClusterEvent{Resource: framework.KindNode, ActionType: a}, nil)
			}
		},
		DeleteFunc: func(obj any) {
			if n := nodeFromObj(obj); n != nil {
				s.cache.RemoveNode(n)
			}
		},
	})
	if err != nil {
		return err
	}
	nsInf := core.Namespaces().Informer()
	updateNS := func(ev framework.ActionType) {
		m := map[string]labels.Set{}
		for _, o := range nsInf.GetStore().List() {
			if ns, ok := o.(*v1.Namespace); ok {
				m[ns.Name] = labels.Set(ns.Labels)
			}
		}
		s.namespaces.Store(&m)
		s.queue.MoveAllToActiveOrBackoffQueue(framework.ClusterEvent{Resource: framework.KindNamespace, ActionType: ev}, nil)
	}
	_, err = nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { updateNS(framework.Add) },
		UpdateFunc: func(any, any) { updateNS(framework.UpdatePodLabel) },
		DeleteFunc: func(any) { updateNS(framework.Delete) },
	})
	if err != nil {
		return err
	}
	move := func(kind string) cache.ResourceEventHandler {
		ev := func(a framework.ActionType) {
			s.queue.MoveAllToActiveOrBackoffQueue(framework.ClusterEvent{Resource: kind, ActionType: a}, nil)
		}
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { ev(framework.Add) },
			UpdateFunc: func(any, any) { ev(framework.Update) },
			DeleteFunc: func(any) { ev(framework.Delete) },
		}
	}
	pvInf, pvcInf := core.PersistentVolumes().Informer(), core.PersistentVolumeClaims().Informer()
	if _, err := pvInf.AddEventHandler(move(framework.KindPersistentVolume)); err != nil {
		return err
	}
	if _, err := pvcInf.AddEventHandler(move(framework.KindPersistentVolumeClaim)); err != nil {
		return err
	}
	scInf := s.factory.Storage().V1().StorageClasses().Informer()
	if _, err := scInf.AddEventHandler(move(framework.KindStorageClass)); err != nil {
		return err
	}
	// Any change to a Service, ReplicationController, ReplicaSet or
	// StatefulSet may change a pod's default spreading selector. Handlers
	// run after the informer's store has the change: a selector built
	// before it is served at most until this handler runs (the informer's
	// delivery lag, the same order of staleness as the listers' own).
	bump := func() { s.spreadOwners.Add(1) }
	owners := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { bump() },
		UpdateFunc: func(any, any) { bump() },
		DeleteFunc: func(any) { bump() },
	}
	ownerInfs := []cache.SharedIndexInformer{
		core.Services().Informer(), core.ReplicationControllers().Informer(),
		s.factory.Apps().V1().ReplicaSets().Informer(), s.factory.Apps().V1().StatefulSets().Informer(),
	}
	for _, inf := range ownerInfs {
		if _, err := inf.AddEventHandler(owners); err != nil {
			return err
		}
	}
	others := append(ownerInfs, s.factory.Policy().V1().PodDisruptionBudgets().Informer(), scInf)
	for _, inf := range append([]cache.SharedIndexInformer{podInf, nodeInf, nsInf, pvInf, pvcInf}, others...) {
		s.synced = append(s.synced, inf.HasSynced)
	}
	return nil
}

// nodeChange classifies a node update into the events plugins care about;
// 0 for changes no plugin cares about (heartbeats).
func nodeChange(old, n *v1.Node) framework.ActionType {
	var a framework.ActionType
	if !reflect.DeepEqual(old.Status.Allocatable, n.Status.Allocatable) {
		a |= framework.UpdateNodeAllocatable
	}
	if !sameLabels(old.Labels, n.Labels) {
		a |= framework.UpdateNodeLabel
	}
	if !reflect.DeepEqual(old.Spec.Taints, n.Spec.Taints) || old.Spec.Unschedulable != n.Spec.Unschedulable {
		a |= framework.UpdateNodeTaint
	}
	if len(old.Status.Conditions) != len(n.Status.Conditions) {
		a |= framework.UpdateNodeCondition
	} else {
		for i := range n.Status.Conditions {
			if old.Status.Conditions[i].Type != n.Status.Conditions[i].Type || old.Status.Conditions[i].Status != n.Status.Conditions[i].Status {
				a |= framework.UpdateNodeCondition
				break
			}
		}
	}
	return a
}
