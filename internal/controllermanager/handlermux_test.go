package controllermanager

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// countingInformer counts the handler registrations made on it.
type countingInformer struct {
	cache.SharedIndexInformer
	mu   sync.Mutex
	regs int
}

func (c *countingInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	c.mu.Lock()
	c.regs++
	c.mu.Unlock()
	return c.SharedIndexInformer.AddEventHandler(h)
}

// eventLog records what one handler was given.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(s string) { l.mu.Lock(); l.events = append(l.events, s); l.mu.Unlock() }
func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *eventLog) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			l.add(fmt.Sprintf("add %s %v", obj.(*corev1.Pod).Name, initial))
		},
		UpdateFunc: func(o, n any) {
			l.add(fmt.Sprintf("update %s %s->%s", n.(*corev1.Pod).Name, o.(*corev1.Pod).ResourceVersion, n.(*corev1.Pod).ResourceVersion))
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			l.add("delete " + obj.(*corev1.Pod).Name)
		},
	}
}

// TestHandlerMux: the handlers added before seal are one registration on
// the informer and each gets every event (the initial list marked as
// such) in order, exactly as a handler registered on its own, which
// handlers added after seal are; their registrations sync with the
// informer; a removed handler gets nothing more.
func TestHandlerMux(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "existing", ResourceVersion: "1"}})
	factory := informers.NewSharedInformerFactory(client, 0)
	counting := &countingInformer{SharedIndexInformer: factory.Core().V1().Pods().Informer()}
	mux := newHandlerMux(counting)

	var muxed [3]eventLog
	var regs []cache.ResourceEventHandlerRegistration
	for i := range muxed {
		reg, err := mux.AddEventHandler(muxed[i].handler())
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, reg)
	}
	var removed eventLog
	removedReg, _ := mux.AddEventHandler(removed.handler())
	if counting.regs != 0 {
		t.Fatalf("%d registrations before seal", counting.regs)
	}
	if err := mux.seal(); err != nil {
		t.Fatal(err)
	}
	if counting.regs != 1 {
		t.Fatalf("%d registrations for 4 handlers, want 1", counting.regs)
	}
	var alone eventLog
	aloneReg, _ := mux.AddEventHandler(alone.handler())
	if counting.regs != 2 {
		t.Fatalf("a handler added after seal: %d registrations, want 2", counting.regs)
	}

	factory.Start(ctx.Done())
	synced := []cache.InformerSynced{aloneReg.HasSynced}
	for _, r := range regs {
		synced = append(synced, r.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		t.Fatal("registrations never synced")
	}
	select {
	case <-regs[0].HasSyncedChecker().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("HasSyncedChecker never done")
	}
	if err := mux.RemoveEventHandler(removedReg); err != nil {
		t.Fatal(err)
	}

	pods := client.CoreV1().Pods("ns")
	p, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "new", ResourceVersion: "2"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion, p.Spec.NodeName = "3", "n1"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "existing", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add existing true", "add new false", "update new 2->3", "delete existing"}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(alone.get(), want) || !slices.Equal(muxed[2].get(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("own registration got %q, muxed %q; want %q", alone.get(), muxed[2].get(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range muxed {
		if got := muxed[i].get(); !slices.Equal(got, want) {
			t.Errorf("muxed handler %d got %q, want %q", i, got, want)
		}
	}
	if got := removed.get(); !slices.Equal(got, want[:1]) {
		t.Errorf("removed handler got %q, want only %q", got, want[:1])
	}
}

// TestMuxFactory: the factory's pod informer is the mux (one per
// factory, sharing the factory's store); a factory sealed before anyone
// asked for pods hands out the plain informer.
func TestMuxFactory(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	f := newMuxFactory(factory)
	inf := f.Core().V1().Pods().Informer()
	if _, ok := inf.(*handlerMux); !ok || inf != f.Core().V1().Pods().Informer() {
		t.Fatalf("pod informer %T, want one handlerMux", inf)
	}
	if inf.GetStore() != factory.Core().V1().Pods().Informer().GetStore() {
		t.Fatal("the mux has a store of its own")
	}
	if err := f.pods.seal(); err != nil {
		t.Fatal(err)
	}

	g := newMuxFactory(informers.NewSharedInformerFactory(client, 0))
	if err := g.pods.seal(); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Core().V1().Pods().Informer().(*handlerMux); ok {
		t.Fatal("a mux made after seal")
	}
}
