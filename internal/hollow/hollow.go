// Package hollow runs simulated ("hollow") nodes, like kubemark/KWOK:
// Nodes registered through the API, heartbeating through Leases in
// kube-node-lease, reporting bound pods Running and finishing deletions,
// with no containers.
//
// Thousands of nodes share one process: one pod informer (filtered to
// assigned pods) and one lease loop serve them all; renewals are staggered
// over the interval. Pod work goes through one rate-limited work queue
// keyed by namespace/name with a few workers; sync is level-triggered.
// The clock is injected so lease renewal is testable.
package hollow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Options configures the nodes.
type Options struct {
	Count  int
	Prefix string // default "hollow-node-"
	// CPU, Memory, Pods are capacity = allocatable; defaults 32, 256Gi, 110.
	CPU, Memory, Pods string
	Labels            map[string]string
	Taints            []v1.Taint
	LeaseInterval     time.Duration // default 10 s
	LeaseDuration     int32         // seconds, default 40
	Workers           int           // pod status workers, default 8
	Clock             clock.Clock
	Logger            *slog.Logger
}

// Nodes is a set of hollow nodes.
type Nodes struct {
	client kubernetes.Interface
	opts   Options
	names  []string
	index  map[string]int
	queue  workqueue.TypedRateLimitingInterface[string]
	// pods is the pod informer's store: *storedPod (or *v1.Pod, which
	// tests put there) by namespace/name.
	pods cache.Indexer
	// nodeLister (set by Run) lets the lease loop see nodes marked NotReady.
	nodeLister corelisters.NodeLister

	// leases holds each node's Lease as its last write returned (nil:
	// read it first); only node i's lease shard writes leases[i].
	leases []atomic.Pointer[coordinationv1.Lease]

	// rest is the client's core/v1 REST client (nil for a fake
	// clientset): pod status goes through it without the typed client's
	// option conversion and decoding of the answer.
	rest *rest.RESTClient
	// nodeIPs[i] is NodeIP(i).
	nodeIPs []string

	mu   sync.Mutex
	uids []types.UID          // node UIDs, as registered
	ips  map[string]*podAddrs // by node
}

// podAddrs are the pod IPs handed out on one node's /24.
type podAddrs struct {
	byKey map[string]string // pod key -> IP
	used  [4]uint64         // host parts in use, a bit each
}

// New prepares n hollow nodes; Run registers them.
func New(client kubernetes.Interface, opts Options) *Nodes {
	if opts.Prefix == "" {
		opts.Prefix = "hollow-node-"
	}
	if opts.CPU == "" {
		opts.CPU = "32"
	}
	if opts.Memory == "" {
		opts.Memory = "256Gi"
	}
	if opts.Pods == "" {
		opts.Pods = "110"
	}
	if opts.LeaseInterval == 0 {
		opts.LeaseInterval = 10 * time.Second
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = 40
	}
	if opts.Workers == 0 {
		opts.Workers = 8
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Nodes{client: client, opts: opts, index: map[string]int{}, ips: map[string]*podAddrs{}, rest: controller.CoreREST(client)}
	n.leases = make([]atomic.Pointer[coordinationv1.Lease], opts.Count)
	n.uids = make([]types.UID, opts.Count)
	for i := 0; i < opts.Count; i++ {
		name := fmt.Sprintf("%s%d", opts.Prefix, i)
		n.names = append(n.names, name)
		n.index[name] = i
		n.nodeIPs = append(n.nodeIPs, NodeIP(i))
	}
	return n
}

// Names returns the node names.
func (n *Nodes) Names() []string { return n.names }

// NodeIP is node i's InternalIP: 100.64.0.0/10 counted up.
func NodeIP(i int) string {
	return fmt.Sprintf("100.%d.%d.%d", 64+(i>>16)&63, (i>>8)&255, i&255)
}

// PodCIDR is node i's fake pod range, a /24 in 10.0.0.0/8.
func PodCIDR(i int) string {
	return fmt.Sprintf("10.%d.%d.0/24", (i>>8)&255, i&255)
}

func (n *Nodes) node(i int) *v1.Node {
	name := n.names[i]
	rl := v1.ResourceList{
		v1.ResourceCPU: resource.MustParse(n.opts.CPU), v1.ResourceMemory: resource.MustParse(n.opts.Memory),
		v1.ResourcePods: resource.MustParse(n.opts.Pods),
	}
	lbl := map[string]string{v1.LabelHostname: name, v1.LabelOSStable: "linux", v1.LabelArchStable: "amd64", "kubernetes.io/role": "hollow"}
	for k, v := range n.opts.Labels {
		lbl[k] = v
	}
	now := metav1.NewTime(n.opts.Clock.Now())
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec:       v1.NodeSpec{Taints: n.opts.Taints, PodCIDR: PodCIDR(i), PodCIDRs: []string{PodCIDR(i)}},
		Status: v1.NodeStatus{
			Capacity: rl, Allocatable: rl, Phase: v1.NodeRunning,
			Conditions: []v1.NodeCondition{
				{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "hollow node is ready", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
			},
			Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: NodeIP(i)}, {Type: v1.NodeHostName, Address: name}},
			NodeInfo:  v1.NodeSystemInfo{KubeletVersion: "v1.37.1-skiff-hollow", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "hollow://0"},
		},
	}
}

// Register creates (or updates) the Node objects.
func (n *Nodes) Register(ctx context.Context) error {
	for i := range n.names {
		node := n.node(i)
		created, err := n.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *v1.Node
			cur, err = n.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err == nil {
				node.ResourceVersion = cur.ResourceVersion
				created, err = n.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("registering node %s: %w", node.Name, err)
		}
		n.mu.Lock()
		n.uids[i] = created.UID // the Lease's owner reference names it
		n.mu.Unlock()
	}
	return nil
}

// RenewLease creates or renews node i's Lease. Like the kubelet's lease
// controller, it renews from the Lease its last write returned, so a
// renewal is one Update (not a Get and an Update: with 1,000 nodes every
// 10 s that Get was 100 requests a second); a conflict or a missing Lease
// goes back to reading it.
func (n *Nodes) RenewLease(ctx context.Context, i int) error {
	name := n.names[i]
	leases := n.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(n.opts.Clock.Now())
	if last := n.leases[i].Load(); last != nil {
		l := last.DeepCopy()
		l.Spec.RenewTime = &now
		l.Spec.HolderIdentity = &name
		updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			n.leases[i].Store(updated)
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renewing lease %s: %w", name, err)
		}
		n.leases[i].Store(nil)
	}
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// The Lease is owned by its Node (so it goes when the node does);
		// an owner reference needs the node's UID.
		uid := n.nodeUID(i)
		if uid == "" {
			node, err := n.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("getting node %s for its lease: %w", name, err)
			}
			uid = node.UID
		}
		created, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: uid}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &n.opts.LeaseDuration, RenewTime: &now},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating lease %s: %w", name, err)
		}
		n.leases[i].Store(created)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting lease %s: %w", name, err)
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = &name
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("renewing lease %s: %w", name, err)
	}
	n.leases[i].Store(updated)
	return nil
}

func (n *Nodes) nodeUID(i int) types.UID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.uids[i]
}

// leaseShards is how many goroutines renew leases. One goroutine doing
// a Get and an Update per node cannot renew 1,000 leases every 10 s once
// requests take more than 10 ms (a loaded machine): nodes then miss their
// lease duration and the node lifecycle controller marks them unreachable.
const leaseShards = 8

// runLeases renews every lease once per interval: node i by shard
// i%leaseShards, the shard's nodes spread evenly over the interval.
func (n *Nodes) runLeases(ctx context.Context) {
	count := len(n.names)
	if count == 0 {
		return
	}
	shards := min(leaseShards, count)
	var wg sync.WaitGroup
	for s := 0; s < shards; s++ {
		wg.Go(func() { n.runLeaseShard(ctx, s, shards) })
	}
	wg.Wait()
}

func (n *Nodes) runLeaseShard(ctx context.Context, shard, shards int) {
	count := len(n.names)
	mine := (count - shard + shards - 1) / shards
	step := n.opts.LeaseInterval / time.Duration(mine)
	// The first pass does not wait: like the kubelet's lease controller,
	// which syncs its Lease as soon as it starts, every node gets its
	// Lease right after registration; renewals are then spread evenly
	// over the interval.
	first := true
	for i := shard; ; i += shards {
		if i >= count {
			i = shard
			first = false
		}
		if err := n.RenewLease(ctx, i); err != nil && ctx.Err() == nil {
			n.opts.Logger.Error("renewing lease", "node", n.names[i], "err", err)
		}
		if err := n.ensureReady(ctx, i); err != nil && ctx.Err() == nil {
			n.opts.Logger.Error("reporting node ready", "node", n.names[i], "err", err)
		}
		if step > 0 && !first {
			select {
			case <-ctx.Done():
				return
			case <-n.opts.Clock.After(step):
			}
		} else if ctx.Err() != nil {
			return
		}
	}
}

// ensureReady posts node i's status again when the cached Node is not
// Ready (the node lifecycle controller set it Unknown while leases were
// late), as a kubelet posts a changed status.
func (n *Nodes) ensureReady(ctx context.Context, i int) error {
	if n.nodeLister == nil {
		return nil
	}
	cur, err := n.nodeLister.Get(n.names[i])
	if err != nil {
		return nil // not in the cache yet
	}
	for _, c := range cur.Status.Conditions {
		if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
			return nil
		}
	}
	node := cur.DeepCopy()
	node.Status = n.node(i).Status
	if _, err := n.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("updating status of node %s: %w", node.Name, err)
	}
	return nil
}

// podInformer watches the pods bound to some node. It sends the requests
// the typed pod informer (all namespaces, spec.nodeName!=) sends; with a
// real clientset its watch decodes pods with decodeStoredPod (see
// storedPod), and objects from a list or a fake clientset are kept whole.
func (n *Nodes) podInformer() cache.SharedIndexInformer {
	sel := fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			l, err := n.client.CoreV1().Pods("").List(ctx, o)
			if err != nil {
				return nil, err
			}
			return storedList(l), nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			if n.rest != nil {
				return WatchPods(ctx, n.rest, "", o, decodeStoredPod)
			}
			w, err := n.client.CoreV1().Pods("").Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if p, ok := e.Object.(*v1.Pod); ok {
					e.Object = &storedPod{Pod: p}
				}
				return e, true
			}), nil
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, n.client), &storedPod{}, 0, cache.Indexers{})
}

// Run registers the nodes, then heartbeats and runs pods until ctx ends.
func (n *Nodes) Run(ctx context.Context) error {
	if err := n.Register(ctx); err != nil {
		return err
	}
	podInf := n.podInformer()
	n.pods = podInf.GetIndexer()
	n.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer n.queue.ShutDown()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			n.queue.Add(key)
		}
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// A pod SyncPod would leave alone (Running, or finished, and not
		// being deleted: the echo of our own status write) is not queued.
		AddFunc: enqueue, UpdateFunc: func(_, o any) {
			if sp, ok := o.(*storedPod); !ok || !settled(sp.Pod) {
				enqueue(o)
			}
		}, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("adding pod handler: %w", err)
	}
	nodeFactory := informers.NewSharedInformerFactory(n.client, 0)
	nodeInf := nodeFactory.Core().V1().Nodes()
	n.nodeLister = nodeInf.Lister()
	nodeInf.Informer() // registers the informer before Start
	go podInf.RunWithContext(ctx)
	nodeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, nodeInf.Informer().HasSynced) {
		return fmt.Errorf("waiting for pod informer: %w", ctx.Err())
	}
	var wg sync.WaitGroup
	for w := 0; w < n.opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n.processNext(ctx) {
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.runLeases(ctx) }()
	<-ctx.Done()
	n.queue.ShutDown()
	wg.Wait()
	return nil
}

func (n *Nodes) processNext(ctx context.Context) bool {
	key, quit := n.queue.Get()
	if quit {
		return false
	}
	defer n.queue.Done(key)
	if err := n.SyncPod(ctx, key); err != nil {
		n.opts.Logger.Info("syncing pod", "pod", key, "err", err)
		n.queue.AddRateLimited(key)
		return true
	}
	n.queue.Forget(key)
	return true
}

// podIP returns the IP of pod key on node, handing out the lowest free
// address of the node's /24 from .2 upwards (the last, .255, when all are
// taken: the fake range is never checked for overflow).
func (n *Nodes) podIP(node, key string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.ips[node]
	if a == nil {
		a = &podAddrs{byKey: map[string]string{}}
		n.ips[node] = a
	}
	if ip, ok := a.byKey[key]; ok {
		return ip
	}
	host := 2
	for host < 255 && a.used[host/64]&(1<<(host%64)) != 0 {
		host++
	}
	a.used[host/64] |= 1 << (host % 64)
	i := n.index[node]
	ip := podIPString(i, host)
	a.byKey[key] = ip
	return ip
}

// podIPString is "10.<i>>8&255>.<i&255>.<host>" without fmt.
func podIPString(i, host int) string {
	b := make([]byte, 0, 15)
	b = append(b, "10."...)
	b = strconv.AppendInt(b, int64((i>>8)&255), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i&255), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(host), 10)
	return string(b)
}

func (n *Nodes) releaseIP(node, key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.ips[node]
	if a == nil {
		return
	}
	if ip, ok := a.byKey[key]; ok {
		delete(a.byKey, key)
		if addr, err := netip.ParseAddr(ip); err == nil {
			host := int(addr.As4()[3])
			a.used[host/64] &^= 1 << (host % 64)
		}
	}
}

// podProtobuf is the client's protobuf encoding of a pod (the Unknown
// envelope around the Pod), written into a buffer of our choosing.
var podProtobuf = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)

// statusBufs holds *runtime.Allocator: the encoded pods' buffers, reused
// from one status write to the next.
var statusBufs = sync.Pool{New: func() any { return new(runtime.Allocator) }}

// lastWrite keeps the slice the encoder writes (in one Write, from the
// allocator's buffer) without copying it.
type lastWrite struct{ b []byte }

func (w *lastWrite) Write(p []byte) (int, error) { w.b = p; return len(p), nil }

// putStatus writes pod's status (PUT pods/status, as the typed client's
// UpdateStatus sends it, in protobuf as a kubelet does), discarding the
// answer; pod is the caller's copy (its TypeMeta is set here).
//
// Two copies of every status write are avoided (per pod they were two
// pod-sized allocations and the reading of the answer, together ~0.2 of
// putStatus's 0.71 CPU-s per 10,000 pods): the pod is encoded into a
// pooled buffer instead of a new one copied into a bytes.Buffer, and the
// answer (the whole pod) is streamed into io.Discard's pooled buffer
// instead of read into a new slice as Do does before anything looks at
// it. Stream sends the same request (throttle, retries, warnings) and
// turns a failure's body into the same API error. The buffer goes back to
// the pool only after a successful answer was read to its end: the
// server had then read the whole body; after a failure the transport may
// still hold it.
//
// With metaSpec (the pod's metadata and spec as the API server sent them,
// see storedPod) the body is those bytes and the encoded status in the
// serializer's envelope: byte for byte what encoding the whole pod writes.
func (n *Nodes) putStatus(ctx context.Context, pod *v1.Pod, metaSpec []byte) error {
	if n.rest == nil {
		_, err := n.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	}
	alloc := statusBufs.Get().(*runtime.Allocator)
	var enc lastWrite
	if metaSpec != nil {
		b, err := encodeWithStatus(alloc, metaSpec, &pod.Status)
		if err != nil {
			statusBufs.Put(alloc)
			return fmt.Errorf("encoding pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		enc.b = b
	} else {
		pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		if err := podProtobuf.EncodeWithAllocator(pod, &enc, alloc); err != nil {
			statusBufs.Put(alloc)
			return fmt.Errorf("encoding pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	body, err := n.rest.Put().UseProtobufAsDefault().Namespace(pod.Namespace).Resource("pods").Name(pod.Name).
		SubResource("status").SetHeader("Content-Type", runtime.ContentTypeProtobuf).Body(enc.b).Stream(ctx)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, body)
	if cerr := body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("reading the answer to pod %s/%s's status: %w", pod.Namespace, pod.Name, err)
	}
	statusBufs.Put(alloc)
	return nil
}

// withStatus returns pod with a copy of its status for the caller to
// change; the rest is shared with pod (read-only: it is only encoded).
func withStatus(pod *v1.Pod) *v1.Pod {
	return &v1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta, Spec: pod.Spec, Status: *pod.Status.DeepCopy()}
}

// SyncPod converges one pod (namespace/name): a pod bound to one of our
// nodes becomes Running; a pod being deleted is reported Failed with its
// containers killed (exit 143, or 137 with no grace period), then deleted
// with grace period 0, as a kubelet would.
func (n *Nodes) SyncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, exists, err := n.pods.GetByKey(key)
	if err != nil {
		return fmt.Errorf("getting pod %s: %w", key, err)
	}
	if !exists {
		return nil
	}
	var pod *v1.Pod
	var metaSpec []byte
	switch o := obj.(type) {
	case *storedPod:
		pod, metaSpec = o.Pod, o.metaSpec
	case *v1.Pod:
		pod = o
	default:
		return fmt.Errorf("pod %s: unexpected %T in the cache", key, obj)
	}
	idx, ours := n.index[pod.Spec.NodeName]
	if !ours {
		return nil
	}
	pods := n.client.CoreV1().Pods(ns)
	if pod.DeletionTimestamp != nil {
		if !allTerminated(pod) {
			st := withStatus(pod)
			now := metav1.NewTime(n.opts.Clock.Now())
			// Killed, not completed: a Job must not count the pod a success.
			st.Status.Phase = v1.PodFailed
			st.Status.ContainerStatuses = containerStatuses(pod, func(c v1.Container) v1.ContainerState {
				return killedByDeletion(pod, c.Name, now)
			}, false)
			setCondition(st, v1.PodReady, v1.ConditionFalse, now)
			setCondition(st, v1.ContainersReady, v1.ConditionFalse, now)
			if err := n.putStatus(ctx, st, metaSpec); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("reporting pod %s terminated: %w", key, err)
			}
		}
		zero := int64(0)
		err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting pod %s: %w", key, err)
		}
		n.releaseIP(pod.Spec.NodeName, key)
		return nil
	}
	if settled(pod) {
		return nil
	}
	st := withStatus(pod)
	now := metav1.NewTime(n.opts.Clock.Now())
	st.Status.Phase = v1.PodRunning
	st.Status.HostIP = n.nodeIPs[idx]
	st.Status.HostIPs = []v1.HostIP{{IP: st.Status.HostIP}}
	st.Status.PodIP = n.podIP(pod.Spec.NodeName, key)
	st.Status.PodIPs = []v1.PodIP{{IP: st.Status.PodIP}}
	st.Status.StartTime = &now
	for _, c := range []v1.PodConditionType{v1.PodInitialized, v1.PodReady, v1.ContainersReady, v1.PodScheduled} {
		setCondition(st, c, v1.ConditionTrue, now)
	}
	st.Status.ContainerStatuses = containerStatuses(pod, func(c v1.Container) v1.ContainerState {
		return v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: now}}
	}, true)
	if err := n.putStatus(ctx, st, metaSpec); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reporting pod %s running: %w", key, err)
	}
	return nil
}

// settled says a pod not being deleted needs nothing more from its node:
// it was reported Running, or it finished.
func settled(pod *v1.Pod) bool {
	return pod.DeletionTimestamp == nil &&
		(pod.Status.Phase == v1.PodRunning || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed)
}

// killedByDeletion is the state a kubelet reports for a container it
// stopped because its pod was deleted: a running container is killed by
// SIGTERM (exit 143) or, with no grace period, SIGKILL (137); one that
// never ran is reported lost, as the kubelet does (137,
// ContainerStatusUnknown). A container that had already exited keeps its
// state.
func killedByDeletion(pod *v1.Pod, name string, now metav1.Time) v1.ContainerState {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != name {
			continue
		}
		if cs.State.Terminated != nil {
			return cs.State
		}
		if cs.State.Running != nil {
			code := int32(128 + 15)
			if g := pod.DeletionGracePeriodSeconds; g != nil && *g == 0 {
				code = 128 + 9
			}
			return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code, Reason: "Error",
				StartedAt: cs.State.Running.StartedAt, FinishedAt: now, ContainerID: cs.ContainerID}}
		}
	}
	return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 128 + 9, Reason: "ContainerStatusUnknown",
		Message: "The container could not be located when the pod was deleted. The container was never started", FinishedAt: now}}
}

func allTerminated(pod *v1.Pod) bool {
	if len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			return false
		}
	}
	return true
}

func containerStatuses(pod *v1.Pod, state func(v1.Container) v1.ContainerState, ready bool) []v1.ContainerStatus {
	out := make([]v1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		started := ready
		out = append(out, v1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "hollow://" + c.Image,
			ContainerID: "hollow://" + string(pod.UID) + "/" + c.Name, Ready: ready, Started: &started, State: state(c)})
	}
	return out
}

func setCondition(pod *v1.Pod, t v1.PodConditionType, s v1.ConditionStatus, now metav1.Time) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			if pod.Status.Conditions[i].Status != s {
				pod.Status.Conditions[i].Status = s
				pod.Status.Conditions[i].LastTransitionTime = now
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, v1.PodCondition{Type: t, Status: s, LastTransitionTime: now})
}
