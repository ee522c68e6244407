package deployment

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/controller/controllertest"
	"skiff.dev/skiff/internal/controller/replicaset"
)

var (
	propSeeds = flag.Int("rollout.seeds", 4, "number of seeds the rollout property test runs")
	propSeed  = flag.Uint64("rollout.seed", 0, "run only this seed (0: seeds 1..rollout.seeds)")
)

// sim is a small cluster in memory: a fake API, shared informers, the real
// Deployment and ReplicaSet controllers driven step by step, and a fake
// kubelet that starts pods and makes them ready after random delays.
type sim struct {
	t       *testing.T
	rng     *rand.Rand
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	dc      *Controller
	rsc     *replicaset.Controller
	clock   *clocktesting.FakeClock
	readyAt map[string]time.Time // pod -> when the kubelet reports it ready
	seq     atomic.Int64
}

func newSim(t *testing.T, seed uint64, d *appsv1.Deployment) *sim {
	s := &sim{
		t:       t,
		rng:     rand.New(rand.NewPCG(seed, seed*7919)),
		client:  fake.NewClientset(d),
		clock:   clocktesting.NewFakeClock(t0),
		readyAt: map[string]time.Time{},
	}
	controllertest.ResourceVersions(s.client)
	s.client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		n := s.seq.Add(1)
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), n))
		}
		obj.SetUID(types.UID(fmt.Sprintf("uid-%d", n)))
		obj.SetCreationTimestamp(metav1.NewTime(s.clock.Now().Add(time.Duration(n) * time.Microsecond)))
		return false, nil, nil
	})
	s.factory = informers.NewSharedInformerFactory(s.client, 0)
	var err error
	rec := record.NewFakeRecorder(100000)
	s.dc, err = New(Config{Clock: s.clock}, s.client, s.factory.Apps().V1().Deployments(), s.factory.Apps().V1().ReplicaSets(), s.factory.Core().V1().Pods(), rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.rsc, err = replicaset.NewReplicaSetController(replicaset.Config{Clock: s.clock}, s.client, s.factory.Apps().V1().ReplicaSets(), s.factory.Core().V1().Pods(), rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		s.factory.Shutdown()
		s.dc.Queue().ShutDown()
		s.rsc.Queue().ShutDown()
	})
	s.factory.Start(ctx.Done())
	s.factory.WaitForCacheSync(ctx.Done())
	return s
}

// settle waits until the informer caches equal the API's contents and the
// ReplicaSet controller has observed all creations and deletions it issued,
// so each step sees a consistent world and runs are reproducible per seed.
func (s *sim) settle() {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(deadline) {
			s.t.Fatal("informers did not catch up")
		}
		ds, _ := s.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		rss, _ := s.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
		pods, _ := s.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		ok := sameContents(s.factory.Apps().V1().Deployments().Informer().GetStore(), toPtrs(ds.Items)) &&
			sameContents(s.factory.Apps().V1().ReplicaSets().Informer().GetStore(), toPtrs(rss.Items)) &&
			sameContents(s.factory.Core().V1().Pods().Informer().GetStore(), toPtrs(pods.Items))
		for i := range rss.Items {
			ok = ok && s.rsc.Expectations().Satisfied(rss.Items[i].Namespace+"/"+rss.Items[i].Name)
		}
		if ok {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func toPtrs[T any](items []T) []any {
	out := make([]any, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

func sameContents(store cache.Store, want []any) bool {
	if len(store.List()) != len(want) {
		return false
	}
	for _, w := range want {
		got, exists, _ := store.Get(w)
		if !exists || !reflect.DeepEqual(got, w) {
			return false
		}
	}
	return true
}

func (s *sim) deployment() *appsv1.Deployment {
	d, err := s.client.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

func (s *sim) pods() []*v1.Pod {
	l, _ := s.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	out := toPtrsTyped(l.Items)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func toPtrsTyped[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// round runs the controllers once: the Deployment, then every ReplicaSet.
func (s *sim) round() {
	s.t.Helper()
	ctx := context.Background()
	s.settle()
	if err := s.dc.Sync(ctx, "default/web"); err != nil {
		s.t.Logf("deployment sync: %v", err) // retried next round, as the queue would
	}
	s.settle()
	rss, _ := s.client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
	for _, rs := range rss.Items {
		if err := s.rsc.Sync(ctx, "default/"+rs.Name); err != nil {
			s.t.Logf("replicaset sync: %v", err)
		}
	}
}

// kubelet binds and starts new pods, and reports pods ready once their
// random start-up delay has passed.
func (s *sim) kubelet() {
	ctx := context.Background()
	now := s.clock.Now()
	for _, p := range s.pods() {
		changed := false
		if p.Spec.NodeName == "" {
			p.Spec.NodeName = "node"
			p.Status.Phase = v1.PodRunning
			p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionFalse, LastTransitionTime: metav1.NewTime(now)}}
			s.readyAt[p.Name] = now.Add(time.Duration(s.rng.IntN(4)) * time.Second)
			changed = true
		}
		if at, ok := s.readyAt[p.Name]; ok && !now.Before(at) && !controller.IsPodReady(p) {
			p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}}
			delete(s.readyAt, p.Name)
			changed = true
		}
		if changed {
			if _, err := s.client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// disrupt makes a ready pod unready for a while (a failing readiness probe).
func (s *sim) disrupt() {
	var ready []*v1.Pod
	for _, p := range s.pods() {
		if controller.IsPodReady(p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return
	}
	p := ready[s.rng.IntN(len(ready))]
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionFalse, LastTransitionTime: metav1.NewTime(s.clock.Now())}}
	s.readyAt[p.Name] = s.clock.Now().Add(time.Duration(1+s.rng.IntN(3)) * time.Second)
	if _, err := s.client.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sim) mutate(f func(*appsv1.Deployment)) {
	d := s.deployment()
	f(d)
	d.Generation++
	if _, err := s.client.AppsV1().Deployments("default").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// counts returns the pods that exist and those available with the
// deployment's minReadySeconds, and the available ones of image.
func (s *sim) counts(minReady int32, image string) (total, available, availableUpdated int32) {
	now := s.clock.Now()
	for _, p := range s.pods() {
		if !controller.IsPodActive(p) {
			continue
		}
		total++
		if controller.IsPodAvailable(p, minReady, now) {
			available++
			if p.Spec.Containers[0].Image == image {
				availableUpdated++
			}
		}
	}
	return
}

func randomIntOrPercent(rng *rand.Rand) intstr.IntOrString {
	if rng.IntN(2) == 0 {
		return intstr.FromInt32(int32(rng.IntN(3)))
	}
	return intstr.FromString(fmt.Sprintf("%d%%", []int{0, 10, 25, 50}[rng.IntN(4)]))
}

// TestRolloutProperties drives random template changes, scale changes and
// readiness flips through the real controllers and checks after every step
// that a rolling update never runs more than replicas+maxSurge pods nor,
// once all replicas were available, fewer than replicas-maxUnavailable
// available pods; then that it converges to the last template.
func TestRolloutProperties(t *testing.T) {
	seeds := []uint64{}
	if *propSeed != 0 {
		seeds = append(seeds, *propSeed)
	} else {
		for i := 1; i <= *propSeeds; i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runRolloutProperty(t, seed) })
	}
}

func runRolloutProperty(t *testing.T, seed uint64) {
	cfgRng := rand.New(rand.NewPCG(seed, 1))
	initial := int32(1 + cfgRng.IntN(6))
	surge, unavailable := randomIntOrPercent(cfgRng), randomIntOrPercent(cfgRng)
	d := newDeployment(initial, surge, unavailable)
	d.Spec.MinReadySeconds = int32(cfgRng.IntN(3))
	s := newSim(t, seed, d)
	t.Logf("replicas=%d maxSurge=%s maxUnavailable=%s minReadySeconds=%d", initial, surge.String(), unavailable.String(), d.Spec.MinReadySeconds)

	version := 1
	// baseline: every replica was available since the last scale change or
	// disruption, so the availability floor applies.
	baseline := false
	check := func(step int, what string) {
		d := s.deployment()
		want := replicas(d.Spec.Replicas)
		total, available, _ := s.counts(d.Spec.MinReadySeconds, d.Spec.Template.Spec.Containers[0].Image)
		if ceiling := want + MaxSurge(d); total > ceiling {
			t.Fatalf("step %d (%s): %d pods, more than replicas %d + maxSurge = %d", step, what, total, want, ceiling)
		}
		if baseline {
			if floor := want - MaxUnavailable(d); available < floor {
				s.dump()
				t.Fatalf("step %d (%s): %d available pods, fewer than replicas %d - maxUnavailable = %d", step, what, available, want, floor)
			}
		}
		if available >= want {
			baseline = true
		}
	}

	const steps = 80
	for step := 0; step < steps; step++ {
		what := "tick"
		switch r := s.rng.IntN(100); {
		case r < 12:
			version++
			what = fmt.Sprintf("template v%d", version)
			s.mutate(setImage(fmt.Sprintf("v%d", version)))
		case r < 20:
			n := int32(1 + s.rng.IntN(8))
			what = fmt.Sprintf("scale to %d", n)
			s.mutate(func(d *appsv1.Deployment) { d.Spec.Replicas = &n })
			baseline = false
		case r < 25:
			what = "readiness flip"
			s.disrupt()
			baseline = false
		}
		s.round()
		s.kubelet()
		s.clock.Step(time.Second)
		check(step, what)
	}

	// Quiet period: no more changes; the rollout must converge.
	final := fmt.Sprintf("v%d", version)
	for i := 0; i < 300; i++ {
		s.round()
		s.kubelet()
		s.clock.Step(time.Second)
		check(steps+i, "converge")
		d := s.deployment()
		want := replicas(d.Spec.Replicas)
		s.settle()
		total, _, availableUpdated := s.counts(d.Spec.MinReadySeconds, final)
		if total == want && availableUpdated == want && d.Status.AvailableReplicas == want &&
			d.Status.UpdatedReplicas == want && d.Status.Replicas == want &&
			cond(d, appsv1.DeploymentProgressing).Reason == ReasonNewRSAvailable {
			rss, _ := s.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
			for _, rs := range rss.Items {
				img := rs.Spec.Template.Spec.Containers[0].Image
				if (img == final) != (*rs.Spec.Replicas == want) || (img != final && *rs.Spec.Replicas != 0) {
					t.Fatalf("converged with replicaset %s (%s) at %d replicas", rs.Name, img, *rs.Spec.Replicas)
				}
			}
			return
		}
	}
	d = s.deployment()
	t.Fatalf("did not converge to %s: status %+v", final, d.Status)
}

func (s *sim) dump() {
	for _, p := range s.pods() {
		var ready string
		for _, c := range p.Status.Conditions {
			ready = fmt.Sprintf("%s@%s", c.Status, c.LastTransitionTime.Sub(t0))
		}
		s.t.Logf("pod %s %s ready=%s owner=%s", p.Name, p.Spec.Containers[0].Image, ready, p.OwnerReferences[0].Name)
	}
	rss, _ := s.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
	for _, rs := range rss.Items {
		s.t.Logf("rs %s %s spec=%d status=%+v", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas, rs.Status)
	}
	s.t.Logf("now %s", s.clock.Now().Sub(t0))
}
