package cli

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/server"
)

// A component's Start and Shutdown do not decide how long shared informers
// run: the owner's stop channel does.
func TestOwnedFactoryOutlivesComponents(t *testing.T) {
	client := fake.NewClientset()
	owner := make(chan struct{})
	f := ownedFactory{informers.NewSharedInformerFactory(client, 0), owner, nil}
	inf := f.Core().V1().Pods().Informer()
	component := make(chan struct{})
	f.Start(component)
	if !cache.WaitForCacheSync(owner, inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	close(component)
	f.Shutdown()
	if _, err := client.CoreV1().Pods("default").Create(context.Background(), &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := inf.GetStore().GetByKey("default/p"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("informer stopped with the component's channel: the pod created afterwards never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if inf.IsStopped() {
		t.Fatal("informer stopped before its owner")
	}
	close(owner)
	for !inf.IsStopped() {
		if time.Now().After(deadline) {
			t.Fatal("informer still running after its owner stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TakeSharedInformers hands the external tests a fresh sharedInformers'
// take.
func TakeSharedInformers() func(ctx context.Context, srv *server.Server, rc *rest.Config, component string) (informers.SharedInformerFactory, error) {
	return (&sharedInformers{}).take
}
