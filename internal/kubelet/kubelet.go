package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/kubelet/downward"
	"skiff.dev/skiff/internal/kubelet/prober"
	"skiff.dev/skiff/internal/kubelet/volume"
)

// Config is the kubelet's node-level configuration.
type Config struct {
	NodeName    string
	NodeIP      string
	PodCIDR     netip.Prefix // used when registering a new Node
	KubeletPort int32
	MaxPods     int64 // default 110
	Reserved    Reserved
	// DataDir holds pod logs (DataDir/pods).
	DataDir string
	// CgroupRoot is the cgroupfs parent of all pods; default "/skiff".
	CgroupRoot string
	Version    string
	// ClusterDNS is the nameserver of pods with dnsPolicy ClusterFirst
	// (default 10.43.0.10; "none" when the cluster has no DNS, which makes
	// ClusterFirst pods use the node's resolvers as upstream's kubelet
	// does without --cluster-dns), ClusterDomain the cluster's DNS domain
	// (default cluster.local). ResolvConf is the node's resolver
	// configuration, used for dnsPolicy Default (default
	// /run/systemd/resolve/resolv.conf when present, else /etc/resolv.conf),
	// and HostsFile the node's hosts file host-network pods see (default
	// /etc/hosts).
	ClusterDNS, ClusterDomain string
	ResolvConf, HostsFile     string
	// LeaseInterval defaults to 10 s, RelistPeriod to 1 s,
	// NodeStatusInterval to 10 s (upstream's nodeStatusUpdateFrequency:
	// an unchanged status costs a read, the write happens on a change or
	// every 5 minutes).
	LeaseInterval, RelistPeriod, NodeStatusInterval time.Duration
	// ParallelStarts bounds how many sandboxes, and how many containers,
	// are being created and started in the runtime at once (default two
	// per CPU, at least 4; negative: no bound). Each start is mostly CPU
	// in containerd, its shim, runc and the CNI plugins: a burst of pods
	// started all at once shares the CPU so that every one of them
	// finishes near the end, while a bounded number in first-come order
	// finishes the early ones early for the same total work.
	ParallelStarts int
}

// Deps are the kubelet's collaborators.
type Deps struct {
	Client  kubernetes.Interface
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient
	Clock   clock.WithTicker
	Logger  *slog.Logger
	// Mounter mounts pod tmpfs volumes; default the system's mount(2).
	Mounter volume.Mounter
	// RuntimeReady, when set, is closed once the runtime can start pods
	// (the agent's built-in images are imported). The node registers and
	// reports Ready at once; pod workers wait for it before their first
	// sync, as a pod waits for its image pull.
	RuntimeReady <-chan struct{}
}

// Kubelet runs the pods bound to its node.
type Kubelet struct {
	cfg     Config
	client  kubernetes.Interface
	rt      *runtimeAdapter
	clock   clock.WithTicker
	log     *slog.Logger
	machine Machine

	podIndex cache.Indexer // pods on this node, indexed by UID
	probes   *prober.Manager
	volumes  *volume.Manager
	objects  *objectCache

	mu       sync.Mutex
	workers  map[types.UID]chan struct{}
	startErr map[types.UID]map[string]waitReason
	// sandboxFail counts consecutive sandbox creation failures and when the
	// last one happened, to back off 1 s doubling to 1 min.
	sandboxFail map[types.UID]failure
	ctx         context.Context
	ready       <-chan struct{} // see Deps.RuntimeReady
}

const uidIndex = "uid"

func podUIDIndex(obj any) ([]string, error) {
	return []string{string(obj.(*v1.Pod).UID)}, nil
}

// initPollInterval is how often a pod with a running init container is
// re-synced.
const initPollInterval = 100 * time.Millisecond

// New validates cfg and builds a Kubelet; Run starts it.
func New(cfg Config, deps Deps) (*Kubelet, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("creating kubelet: node name is required")
	}
	if deps.Client == nil || deps.Runtime == nil || deps.Image == nil {
		return nil, errors.New("creating kubelet: client and cri services are required")
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = 110
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/skiff"
	}
	if cfg.LeaseInterval == 0 {
		cfg.LeaseInterval = 10 * time.Second
	}
	if cfg.RelistPeriod == 0 {
		cfg.RelistPeriod = time.Second
	}
	if cfg.NodeStatusInterval == 0 {
		cfg.NodeStatusInterval = 10 * time.Second
	}
	if cfg.ParallelStarts == 0 {
		cfg.ParallelStarts = max(4, 2*runtime.NumCPU())
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	switch cfg.ClusterDNS {
	case "":
		cfg.ClusterDNS = "10.43.0.10"
	case "none":
		cfg.ClusterDNS = ""
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.ResolvConf == "" {
		// With systemd-resolved, /etc/resolv.conf names a loopback stub
		// that means nothing inside a pod; its upstream list is real.
		cfg.ResolvConf = "/etc/resolv.conf"
		if fileExists("/run/systemd/resolve/resolv.conf") {
			cfg.ResolvConf = "/run/systemd/resolve/resolv.conf"
		}
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = "/etc/hosts"
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	k := &Kubelet{
		cfg:         cfg,
		client:      deps.Client,
		rt:          &runtimeAdapter{rt: deps.Runtime, img: deps.Image, puller: newImagePuller(deps.Image, clientGetter{c: deps.Client}, deps.Clock), logRoot: cfg.DataDir + "/pods", cgroupRoot: cfg.CgroupRoot, podRoot: filepath.Join(cfg.DataDir, "pod-volumes")},
		clock:       deps.Clock,
		log:         deps.Logger.With("node", cfg.NodeName),
		workers:     map[types.UID]chan struct{}{},
		startErr:    map[types.UID]map[string]waitReason{},
		sandboxFail: map[types.UID]failure{},
		ready:       deps.RuntimeReady,
	}
	if cfg.ParallelStarts > 0 {
		k.rt.sandboxStarts = make(chan struct{}, cfg.ParallelStarts)
		k.rt.containerStarts = make(chan struct{}, cfg.ParallelStarts)
	}
	k.probes = prober.NewManager(prober.NetChecker{Runtime: deps.Runtime}, deps.Clock, k.enqueue)
	k.objects = newObjectCache(deps.Client, k.enqueue)
	vm, err := volume.New(volume.Config{Root: k.rt.podRoot},
		volume.Deps{Objects: clientGetter{c: deps.Client, cache: k.objects}, Mounter: deps.Mounter, Clock: deps.Clock})
	if err != nil {
		return nil, fmt.Errorf("creating kubelet: %w", err)
	}
	k.volumes = vm
	return k, nil
}

// Run registers the node and runs pods until ctx ends. Running containers
// are left alone on return: a restarted agent adopts them.
func (k *Kubelet) Run(ctx context.Context) error {
	k.ctx = ctx
	k.objects.start(ctx)
	k.machine = readMachine(k.cfg.DataDir)
	if v, err := k.rt.rt.Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
		k.machine.ContainerRuntime = v.GetRuntimeName() + "://" + v.GetRuntimeVersion()
	}
	node, err := k.registerNode(ctx)
	if err != nil {
		return err
	}
	if err := k.renewLease(ctx, string(node.UID)); err != nil {
		return err
	}
	k.log.Info("registered node", "podCIDR", node.Spec.PodCIDR)

	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(cache.Indexers{uidIndex: podUIDIndex}); err != nil {
		return fmt.Errorf("indexing pods: %w", err)
	}
	k.podIndex = inf.GetIndexer()
	kick := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*v1.Pod); ok {
			k.enqueue(p.UID)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick,
		UpdateFunc: func(o, n any) {
			// Our own status writes come back as updates; only what the
			// kubelet acts on (spec, deletion, metadata) needs a sync.
			op, np := o.(*v1.Pod), n.(*v1.Pod)
			if !equality.Semantic.DeepEqual(op.Spec, np.Spec) || !equality.Semantic.DeepEqual(op.ObjectMeta.DeletionTimestamp, np.ObjectMeta.DeletionTimestamp) ||
				!equality.Semantic.DeepEqual(op.Labels, np.Labels) || !equality.Semantic.DeepEqual(op.Annotations, np.Annotations) {
				kick(n)
			}
		},
		DeleteFunc: kick,
	}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("syncing pod informer: %w", ctx.Err())
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); k.heartbeat(ctx, node) }()
	go func() { defer wg.Done(); k.relistLoop(ctx) }()
	wg.Wait()
	return nil
}

func (k *Kubelet) heartbeat(ctx context.Context, node *v1.Node) {
	lease := k.clock.NewTicker(k.cfg.LeaseInterval)
	defer lease.Stop()
	status := k.clock.NewTicker(k.cfg.NodeStatusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C():
			if err := k.renewLease(ctx, string(node.UID)); err != nil && ctx.Err() == nil {
				k.log.Error("renewing lease", "err", err)
			}
		case <-status.C():
			n, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
			if err == nil {
				_, err = k.updateNodeStatus(ctx, n, k.clock.Now())
			}
			if err != nil && ctx.Err() == nil {
				k.log.Error("updating node status", "err", err)
			}
		}
	}
}

// relistLoop is the PLEG: it kicks the worker of every pod whose runtime
// fingerprint changed, and every pod once per resync.
func (k *Kubelet) relistLoop(ctx context.Context) {
	t := k.clock.NewTicker(k.cfg.RelistPeriod)
	defer t.Stop()
	var last map[types.UID]string
	for n := 0; ; n++ {
		snap, err := k.rt.snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.Error("relisting runtime", "err", err)
		} else {
			for uid, fp := range snap {
				if last == nil || last[uid] != fp {
					k.enqueue(uid)
				}
			}
			for uid := range last {
				if _, ok := snap[uid]; !ok {
					k.enqueue(uid)
				}
			}
			last = snap
		}
		if n%30 == 0 {
			for _, obj := range k.podIndex.List() {
				k.enqueue(obj.(*v1.Pod).UID)
			}
			// Volume directories of pods neither the API nor the runtime
			// knows any more: their (empty) syncs tear them down.
			uids, err := k.volumes.PodUIDs()
			if err != nil {
				k.log.Error("listing pod volume dirs", "err", err)
			}
			for _, uid := range uids {
				if _, inRuntime := last[uid]; !inRuntime && k.podByUID(uid) == nil {
					k.enqueue(uid)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// enqueue kicks uid's worker, starting one if needed. A kick while a sync
// runs leaves exactly one more sync pending.
func (k *Kubelet) enqueue(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == nil || k.ctx.Err() != nil {
		return
	}
	ch, ok := k.workers[uid]
	if !ok {
		ch = make(chan struct{}, 1)
		k.workers[uid] = ch
		go k.worker(k.ctx, uid, ch)
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// worker runs uid's syncs one at a time. It holds at most one pending
// wake-up: each sync result replaces the previous one, so retries never
// pile up.
func (k *Kubelet) worker(ctx context.Context, uid types.UID, kick chan struct{}) {
	var timer clock.Timer
	var wake <-chan time.Time
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, wake = nil, nil
		}
	}
	defer stopTimer()
	if k.ready != nil {
		select {
		case <-ctx.Done():
			return
		case <-k.ready:
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-wake:
		}
		stopTimer()
		res, err := k.syncPod(ctx, uid)
		if err != nil && ctx.Err() == nil {
			k.log.Error("syncing pod", "uid", uid, "err", err)
			res.requeue = max(res.requeue, 2*time.Second)
		}
		if res.done {
			k.mu.Lock()
			if len(kick) == 0 {
				delete(k.workers, uid)
				delete(k.startErr, uid)
				delete(k.sandboxFail, uid)
				k.rt.puller.forget(uid)
				k.mu.Unlock()
				return
			}
			k.mu.Unlock()
			continue
		}
		if res.requeue > 0 {
			timer = k.clock.NewTimer(res.requeue)
			wake = timer.C()
		}
	}
}

type syncResult struct {
	requeue time.Duration
	done    bool // nothing left to do for this UID; the worker may exit
}

func (k *Kubelet) podByUID(uid types.UID) *v1.Pod {
	objs, err := k.podIndex.ByIndex(uidIndex, string(uid))
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*v1.Pod)
}

// syncPod converges one pod's runtime state towards its spec and reports
// its status. It is level-triggered: any number of kicks collapse into one
// call that reads everything afresh.
func (k *Kubelet) syncPod(ctx context.Context, uid types.UID) (syncResult, error) {
	pod := k.podByUID(uid)
	st, err := k.rt.podState(ctx, uid)
	if err != nil {
		return syncResult{}, err
	}
	log := k.log.With("pod", st.Namespace+"/"+st.Name, "uid", uid)
	if pod == nil {
		// Gone from the API (force-deleted, or deleted while we were down).
		if st.Empty() {
			// Volumes may outlive the containers (an agent stopped
			// mid-teardown): remove them too.
			k.objects.unregister(uid)
			if err := k.volumes.TearDown(uid); err != nil {
				return syncResult{}, fmt.Errorf("tearing down volumes: %w", err)
			}
			return syncResult{done: true}, nil
		}
		grace := int64(2)
		if len(st.Sandboxes) > 0 && st.Sandboxes[0].Grace >= 0 {
			grace = st.Sandboxes[0].Grace
		}
		log.Info("removing orphaned pod", "grace", grace)
		if err := k.rt.killPod(ctx, st, grace, "", true); err != nil {
			return syncResult{}, err
		}
		k.rt.removePodFiles(st.Namespace, st.Name, uid)
		k.probes.RetainPod(uid, nil)
		k.objects.unregister(uid)
		if err := k.volumes.TearDown(uid); err != nil {
			return syncResult{}, fmt.Errorf("tearing down volumes: %w", err)
		}
		return syncResult{done: true}, nil
	}
	log = k.log.With("pod", pod.Namespace+"/"+pod.Name)
	if pod.DeletionTimestamp != nil {
		return k.terminatePod(ctx, pod, st, log)
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		// Finished pods keep their exited containers (for logs) but not a
		// running sandbox.
		if hasLive(st) {
			if err := k.killPod(ctx, pod, st, "", false); err != nil {
				return syncResult{}, err
			}
		}
		// Its volumes are no longer needed either.
		k.objects.unregister(uid)
		if err := k.volumes.TearDown(uid); err != nil {
			return syncResult{}, fmt.Errorf("tearing down volumes: %w", err)
		}
		return syncResult{}, nil
	}

	if killed, err := k.killUnhealthy(ctx, pod, st, log); err != nil {
		return syncResult{}, err
	} else if killed {
		if st, err = k.rt.podState(ctx, uid); err != nil {
			return syncResult{}, err
		}
	}
	k.objects.register(pod)
	vols, refreshIn, volErr := k.volumes.Setup(ctx, pod)
	probes := k.syncProbes(ctx, pod, st)
	now := k.clock.Now()
	actions := computePodActions(pod, st, now, probes.notStarted)
	res := syncResult{requeue: actions.RequeueAfter}
	if actions.CreateSandbox {
		if wait := k.sandboxBackoff(uid, now); wait > 0 {
			_, err := k.writeStatus(ctx, pod, st, actions, probes)
			return syncResult{requeue: wait}, err
		}
	}
	if volErr != nil && actions.StartsContainers() {
		// Nothing starts until its volumes are ready; containers wait in
		// ContainerCreating with the mount error, as upstream.
		log.Info("volumes not ready", "err", volErr)
		k.recordVolumeErr(pod, actions, volErr)
		actions = Actions{KillPod: actions.KillPod, StartInit: -1, InitDone: actions.InitDone, InitFailed: actions.InitFailed, Backoff: actions.Backoff}
		res.requeue = 2 * time.Second
	}
	if actions.Changes() {
		if err := k.apply(ctx, pod, st, actions, vols, log); err != nil {
			log.Info("applying pod actions", "err", err)
			res.requeue = 2 * time.Second
		}
		if st, err = k.rt.podState(ctx, uid); err != nil {
			return syncResult{}, err
		}
		probes = k.syncProbes(ctx, pod, st)
		actions = computePodActions(pod, st, k.clock.Now(), probes.notStarted)
		if actions.RequeueAfter > 0 && (res.requeue == 0 || actions.RequeueAfter < res.requeue) {
			res.requeue = actions.RequeueAfter
		}
	}
	if refreshIn > 0 && (res.requeue == 0 || refreshIn < res.requeue) {
		res.requeue = refreshIn
	}
	if !actions.InitDone && !actions.InitFailed && res.requeue == 0 {
		// containerd 1.6 sends no exit events over CRI and relist runs once
		// a second: poll the running init container so the next one starts
		// promptly.
		res.requeue = initPollInterval
	}
	if actions.InitFailed && hasLive(st) {
		if err := k.killPod(ctx, pod, st, "", false); err != nil {
			return res, err
		}
	}
	phase, err := k.writeStatus(ctx, pod, st, actions, probes)
	if err == nil && (phase == v1.PodSucceeded || phase == v1.PodFailed) && hasLive(st) {
		// Done for good: release the sandbox (and its IP) now rather than
		// when the terminal status comes back through the informer.
		err = k.killPod(ctx, pod, st, "", false)
	}
	return res, err
}

// probeView is what the probes say about a pod's running containers, by
// container ID.
type probeView struct {
	ready      map[string]bool
	notStarted map[string]bool
}

// syncProbes keeps probe workers for the pod's running app and sidecar
// containers and returns their readiness and startup state.
func (k *Kubelet) syncProbes(ctx context.Context, pod *v1.Pod, st PodState) probeView {
	live := map[string]bool{}
	view := probeView{ready: map[string]bool{}, notStarted: map[string]bool{}}
	sb, ok := st.ReadySandbox()
	if !ok {
		k.probes.RetainPod(pod.UID, live)
		return view
	}
	podIP := ""
	if len(sb.IPs) > 0 {
		podIP = sb.IPs[0]
	} else if pod.Spec.HostNetwork {
		podIP = k.cfg.NodeIP
	}
	probe := func(spec *v1.Container) {
		c, ok := st.Latest(spec.Name, sb.ID)
		if !ok || c.State != ContainerRunning {
			return
		}
		live[c.ID] = true
		k.probes.Ensure(k.ctx, prober.Target{PodUID: pod.UID, PodIP: podIP, ContainerID: c.ID, Container: spec})
		if !k.probes.Started(c.ID, spec) {
			view.notStarted[c.ID] = true
		}
		if spec.ReadinessProbe != nil {
			r, known := k.probes.Result(c.ID, prober.Readiness)
			view.ready[c.ID] = known && r
		}
	}
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			probe(&pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		probe(&pod.Spec.Containers[i])
	}
	k.probes.RetainPod(pod.UID, live)
	return view
}

// killUnhealthy stops running containers whose liveness or startup probe
// failed; the restart policy then restarts them like any other exit.
func (k *Kubelet) killUnhealthy(ctx context.Context, pod *v1.Pod, st PodState, log *slog.Logger) (bool, error) {
	killed := false
	podIP := ""
	if sb, ok := st.ReadySandbox(); ok && len(sb.IPs) > 0 {
		podIP = sb.IPs[0]
	} else if pod.Spec.HostNetwork {
		podIP = k.cfg.NodeIP
	}
	for _, c := range st.Containers {
		if c.State != ContainerRunning {
			continue
		}
		probe := ""
		if r, known := k.probes.Result(c.ID, prober.Liveness); known && !r {
			probe = "liveness"
		} else if r, known := k.probes.Result(c.ID, prober.Startup); known && !r {
			probe = "startup"
		}
		if probe == "" {
			continue
		}
		log.Info(probe+" probe failed, killing container", "container", c.Name)
		deadline := k.clock.Now().Add(time.Duration(podGrace(pod)) * time.Second)
		if err := k.stopContainer(ctx, pod, c, podIP, deadline); err != nil {
			return killed, err
		}
		killed = true
	}
	return killed, nil
}

func podGrace(pod *v1.Pod) int64 {
	if pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return v1.DefaultTerminationGracePeriodSeconds
}

// terminatePod stops the containers with the pod's grace period (preStop
// hooks first, sidecars last), removes the sandbox (releasing its IP and
// veth), tears down the volumes, and deletes the pod object.
func (k *Kubelet) terminatePod(ctx context.Context, pod *v1.Pod, st PodState, log *slog.Logger) (syncResult, error) {
	if !st.Empty() {
		log.Info("terminating pod", "grace", podGrace(pod))
		if err := k.killPod(ctx, pod, st, "", true); err != nil {
			return syncResult{}, err
		}
	}
	k.rt.removePodFiles(pod.Namespace, pod.Name, pod.UID)
	k.probes.RetainPod(pod.UID, nil)
	k.objects.unregister(pod.UID)
	if err := k.volumes.TearDown(pod.UID); err != nil {
		return syncResult{}, fmt.Errorf("tearing down volumes: %w", err)
	}
	zero := int64(0)
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return syncResult{}, fmt.Errorf("deleting pod: %w", err)
	}
	return syncResult{done: true}, nil
}

// apply carries out actions; errors starting one container are recorded as
// its waiting reason and do not stop the others.
func (k *Kubelet) apply(ctx context.Context, pod *v1.Pod, st PodState, a Actions, vols map[string]volume.Mounted, log *slog.Logger) error {
	sandboxCfg := k.sandboxConfig(pod, a.SandboxAttempt)
	sb, _ := st.ReadySandbox()
	sandboxID := sb.ID
	if a.KillPod {
		keep := sandboxID
		if a.CreateSandbox {
			keep = ""
		}
		if err := k.killPod(ctx, pod, st, keep, true); err != nil {
			return err
		}
	}
	var podIPs []string
	if a.CreateSandbox {
		begin := k.clock.Now()
		id, err := k.rt.runSandbox(ctx, sandboxCfg)
		k.recordSandbox(pod.UID, err)
		if err != nil {
			return err
		}
		sandboxID = id
		resp, err := k.rt.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil {
			return fmt.Errorf("getting status of sandbox %s: %w", id, err)
		}
		podIPs = sandboxState(&runtimeapi.PodSandbox{Id: id}, resp.GetStatus()).IPs
		log.Info("created sandbox", "sandbox", shortID(id), "ips", podIPs, "took", k.clock.Since(begin).Round(time.Millisecond))
	} else {
		sandboxCfg.Metadata.Attempt = sb.Attempt
		podIPs = sb.IPs
	}
	if pod.Spec.HostNetwork && len(podIPs) == 0 && k.cfg.NodeIP != "" {
		podIPs = []string{k.cfg.NodeIP}
	}
	if a.StartsContainers() {
		if err := k.writeHosts(pod, podIPs); err != nil {
			return err
		}
	}
	start := func(c *v1.Container) error {
		begin := k.clock.Now()
		err := k.startOne(ctx, pod, c, a.Attempts[c.Name], sandboxID, sandboxCfg, podIPs, vols)
		k.recordStartErr(pod.UID, c.Name, err)
		if err == nil {
			log.Info("started container", "container", c.Name, "attempt", a.Attempts[c.Name], "took", k.clock.Since(begin).Round(time.Millisecond))
		}
		return err
	}
	if a.StartInit >= 0 {
		return start(&pod.Spec.InitContainers[a.StartInit])
	}
	var errs []error
	// Sidecars first, in order: they are up before the app containers
	// that restart with them.
	for _, i := range a.StartSidecars {
		if err := start(&pod.Spec.InitContainers[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, i := range a.Start {
		if err := start(&pod.Spec.Containers[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := k.rt.removeOldAttempts(ctx, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sandboxConfig is the CRI sandbox of pod with its resolv.conf.
func (k *Kubelet) sandboxConfig(pod *v1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	cfg := k.rt.sandboxConfig(pod, attempt)
	var host hostDNS
	if b, err := os.ReadFile(k.cfg.ResolvConf); err == nil {
		host = parseResolvConf(string(b))
	}
	cfg.DnsConfig = dnsConfig(pod, k.cfg.ClusterDNS, k.cfg.ClusterDomain, host)
	return cfg
}

// hostsPath is the pod's managed /etc/hosts.
func (k *Kubelet) hostsPath(uid types.UID) string {
	return filepath.Join(k.volumes.PodDir(uid), "etc-hosts")
}

func (k *Kubelet) writeHosts(pod *v1.Pod, podIPs []string) error {
	var nodeHosts string
	if pod.Spec.HostNetwork {
		b, _ := os.ReadFile(k.cfg.HostsFile)
		nodeHosts = string(b)
	}
	p := k.hostsPath(pod.UID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("creating pod dir: %w", err)
	}
	if err := os.WriteFile(p, hostsFile(pod, podIPs, k.cfg.ClusterDomain, nodeHosts), 0o644); err != nil {
		return fmt.Errorf("writing pod hosts file: %w", err)
	}
	return nil
}

func (k *Kubelet) startOne(ctx context.Context, pod *v1.Pod, c *v1.Container, attempt uint32, sandboxID string, sandboxCfg *runtimeapi.PodSandboxConfig, podIPs []string, vols map[string]volume.Mounted) error {
	rt := downward.Runtime{PodIPs: podIPs, HostIP: k.cfg.NodeIP, Allocatable: k.allocatable()}
	env, err := resolveEnv(ctx, pod, c, rt, clientGetter{c: k.client, cache: k.objects})
	if err != nil {
		return err
	}
	mounts, err := k.containerMounts(pod, c, attempt, vols, env)
	if err != nil {
		return err
	}
	id, err := k.rt.startContainer(ctx, pod, c, attempt, sandboxID, sandboxCfg, env, mounts)
	if err != nil {
		return err
	}
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		hctx, cancel := context.WithTimeout(ctx, postStartTimeout)
		podIP := ""
		if len(podIPs) > 0 {
			podIP = podIPs[0]
		}
		herr := k.runHook(hctx, c.Lifecycle.PostStart, c, id, podIP)
		cancel()
		if herr != nil {
			// As upstream: the container is killed and restarted by its
			// restart policy.
			deadline := k.clock.Now().Add(time.Duration(podGrace(pod)) * time.Second)
			_ = k.stopContainer(ctx, pod, ContainerState{ID: id, Name: c.Name, State: ContainerRunning}, podIP, deadline)
			return &hookError{fmt.Errorf("postStart hook of container %s: %w", c.Name, herr)}
		}
	}
	return nil
}

// hookError is a failed postStart hook: reported as PostStartHookError.
type hookError struct{ err error }

func (e *hookError) Error() string { return e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// containerMounts is c's bind mounts: its volumeMounts, the pod's managed
// /etc/hosts unless it mounts its own, and its termination message file.
func (k *Kubelet) containerMounts(pod *v1.Pod, c *v1.Container, attempt uint32, vols map[string]volume.Mounted, env []string) ([]*runtimeapi.Mount, error) {
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		name, val, _ := cutEnv(kv)
		vars[name] = val
	}
	ms, err := volume.ContainerMounts(c, vols, vars)
	if err != nil {
		var me *volume.MountError
		if errors.As(err, &me) {
			return nil, &envError{msg: me.Msg}
		}
		return nil, err
	}
	out := make([]*runtimeapi.Mount, 0, len(ms)+1)
	ownHosts := false
	for _, m := range ms {
		if m.ContainerPath == "/etc/hosts" {
			ownHosts = true
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, Readonly: m.ReadOnly, Propagation: propagation(m.Propagation)})
	}
	if !ownHosts {
		out = append(out, &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: k.hostsPath(pod.UID)})
	}
	if p := c.TerminationMessagePath; p != "" && filepath.IsAbs(p) {
		host := terminationLogPath(k.rt.podRoot, pod.UID, c.Name, attempt)
		if err := prepareTerminationLog(host); err != nil {
			return nil, err
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: p, HostPath: host})
	}
	return out, nil
}

func propagation(p v1.MountPropagationMode) runtimeapi.MountPropagation {
	switch p {
	case v1.MountPropagationHostToContainer:
		return runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
	case v1.MountPropagationBidirectional:
		return runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	}
	return runtimeapi.MountPropagation_PROPAGATION_PRIVATE
}

// allocatable is the node's allocatable, once known.
func (k *Kubelet) allocatable() v1.ResourceList {
	if k.machine.CPUs == 0 {
		return nil
	}
	return nodeStatus(k.machine, k.cfg.Reserved, k.cfg.NodeIP, k.cfg.NodeName, k.cfg.KubeletPort, k.cfg.MaxPods, k.cfg.Version, k.clock.Now(), nil).Allocatable
}

// withLogFallback fills the message of failed containers whose policy is
// FallbackToLogsOnError and that left no termination message with the
// tail of their log. It copies st before changing it.
func (k *Kubelet) withLogFallback(pod *v1.Pod, st PodState) PodState {
	copied := false
	for i, c := range st.Containers {
		if c.State != ContainerExited || c.Message != "" || c.ExitCode == 0 || !terminationPolicyFallback(pod, c.Name) {
			continue
		}
		if !copied {
			st.Containers = append([]ContainerState{}, st.Containers...)
			copied = true
		}
		logFile := filepath.Join(k.rt.podLogDir(pod), c.Name, strconv.FormatUint(uint64(c.Attempt), 10)+".log")
		st.Containers[i].Message = readTerminationMessage("", logFile, true, c.ExitCode)
	}
	return st
}

// recordVolumeErr reports a volume failure as the waiting message of every
// container the sync wanted to start.
func (k *Kubelet) recordVolumeErr(pod *v1.Pod, a Actions, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.startErr[pod.UID]
	if m == nil {
		m = map[string]waitReason{}
		k.startErr[pod.UID] = m
	}
	w := waitReason{Reason: "ContainerCreating", Message: err.Error()}
	if a.StartInit >= 0 {
		m[pod.Spec.InitContainers[a.StartInit].Name] = w
	}
	for _, i := range a.StartSidecars {
		m[pod.Spec.InitContainers[i].Name] = w
	}
	for _, i := range a.Start {
		m[pod.Spec.Containers[i].Name] = w
	}
}

func (k *Kubelet) recordStartErr(uid types.UID, name string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.startErr[uid]
	if err == nil {
		delete(m, name)
		return
	}
	if m == nil {
		m = map[string]waitReason{}
		k.startErr[uid] = m
	}
	var envErr *envError
	var imgErr *imageError
	var hookErr *hookError
	switch {
	case errors.As(err, &hookErr):
		m[name] = waitReason{Reason: "PostStartHookError", Message: err.Error()}
	case errors.As(err, &envErr):
		m[name] = waitReason{Reason: "CreateContainerConfigError", Message: err.Error()}
	case errors.As(err, &imgErr):
		m[name] = waitReason{Reason: imgErr.reason, Message: err.Error()}
	default:
		m[name] = waitReason{Reason: "RunContainerError", Message: err.Error()}
	}
}

// writeStatus writes the status derived from st when it differs from the
// pod's and returns the phase it derived.
func (k *Kubelet) writeStatus(ctx context.Context, pod *v1.Pod, st PodState, a Actions, probes probeView) (v1.PodPhase, error) {
	k.mu.Lock()
	startErr := map[string]waitReason{}
	for n, w := range k.startErr[pod.UID] {
		startErr[n] = w
	}
	k.mu.Unlock()
	st = k.withLogFallback(pod, st)
	status := generatePodStatus(pod, statusInput{State: st, Actions: a, HostIP: k.cfg.NodeIP, Now: k.clock.Now(), StartErr: startErr, Ready: probes.ready, NotStarted: probes.notStarted})
	status.NominatedNodeName = pod.Status.NominatedNodeName
	if statusEqual(status, pod.Status) {
		return status.Phase, nil
	}
	p := pod.DeepCopy()
	p.Status = status
	if _, err := k.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return status.Phase, nil // a newer object is on its way through the informer
		}
		return status.Phase, fmt.Errorf("updating pod status: %w", err)
	}
	return status.Phase, nil
}

type failure struct {
	count int
	last  time.Time
}

func (k *Kubelet) recordSandbox(uid types.UID, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.sandboxFail, uid)
		return
	}
	f := k.sandboxFail[uid]
	k.sandboxFail[uid] = failure{count: f.count + 1, last: k.clock.Now()}
}

// sandboxBackoff is how long to wait before trying to create uid's sandbox
// again after failures.
func (k *Kubelet) sandboxBackoff(uid types.UID, now time.Time) time.Duration {
	k.mu.Lock()
	f, ok := k.sandboxFail[uid]
	k.mu.Unlock()
	if !ok {
		return 0
	}
	d := time.Second << min(f.count-1, 6)
	return max(0, f.last.Add(min(d, time.Minute)).Sub(now))
}
