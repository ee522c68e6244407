package apiserver

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/test/integration/framework"
)

// A watch-list (sendInitialEvents with resourceVersionMatch NotOlderThan,
// no resourceVersion) is what client-go's informers try first: it streams
// the current objects as ADDED, a bookmark marking the end of the initial
// events, then changes. It used to be refused with 400, so every informer
// fell back to a list and a second request.
func TestWatchList(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	ns := "default"
	cms := c.Client.CoreV1().ConfigMaps(ns)
	for _, name := range []string{"wl-a", "wl-b", "wl-c"} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"wl": "yes"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{
		LabelSelector: "wl=yes", AllowWatchBookmarks: true,
		SendInitialEvents: ptr.To(true), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		t.Fatalf("watch-list from the current state: %v", err)
	}
	defer w.Stop()
	next := func() watch.Event {
		t.Helper()
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event within 10s")
		}
		return watch.Event{}
	}
	seen := map[string]bool{}
	for len(seen) < 3 {
		ev := next()
		if ev.Type != watch.Added {
			t.Fatalf("initial event %s before all three objects (seen %v)", ev.Type, seen)
		}
		seen[ev.Object.(*corev1.ConfigMap).Name] = true
	}
	ev := next()
	if ev.Type != watch.Bookmark || ev.Object.(*corev1.ConfigMap).Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("after the initial objects: %s %+v, want the initial-events-end bookmark", ev.Type, ev.Object)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "wl-d", Labels: map[string]string{"wl": "yes"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next()
		if ev.Type == watch.Bookmark {
			continue
		}
		if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "wl-d" {
			t.Fatalf("after the bookmark: %s %+v, want ADDED wl-d", ev.Type, ev.Object)
		}
		break
	}

	// Upstream's rules for resourceVersionMatch on a watch.
	_, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, ResourceVersion: "1"})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("resourceVersionMatch without sendInitialEvents: %v, want 400", err)
	}
	_, err = cms.Watch(ctx, metav1.ListOptions{SendInitialEvents: ptr.To(true)})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("sendInitialEvents without resourceVersionMatch: %v, want 400", err)
	}
	// A list still needs a resourceVersion with resourceVersionMatch.
	_, err = cms.List(ctx, metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("list with resourceVersionMatch and no resourceVersion: %v, want 400", err)
	}
}
