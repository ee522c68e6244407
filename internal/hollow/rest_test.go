package hollow

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// recordingServer answers every request 200 with an empty pod and keeps
// what it was sent.
type recordingServer struct {
	mu       sync.Mutex
	requests []string
	bodies   [][]byte
}

func (s *recordingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Accept"))
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`))
}

// TestStatusThroughRESTClient: with a real clientset the hollow nodes
// write pod status through the REST client; the request (method, URL,
// headers, body) is the one the typed client's UpdateStatus sends, and
// the status is a kubelet's: Running, IPs, conditions, container states,
// the pod's metadata and spec unchanged.
func TestStatusThroughRESTClient(t *testing.T) {
	srv := &recordingServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"app": "web"}},
		Spec:       v1.PodSpec{NodeName: "hollow-node-3", Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
		Status: v1.PodStatus{Phase: v1.PodPending, Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.Unix(900, 0)}}},
	}
	orig := pod.DeepCopy()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := idx.Add(pod); err != nil {
		t.Fatal(err)
	}
	newNodes := func() *Nodes {
		n := New(client, Options{Count: 4, Clock: clocktesting.NewFakeClock(time.Unix(1000, 0))})
		n.pods = idx
		return n
	}
	lean := newNodes()
	if lean.rest == nil {
		t.Fatal("no REST client for a real clientset")
	}
	typed := newNodes()
	typed.rest = nil
	for _, n := range []*Nodes{typed, lean} {
		if err := n.SyncPod(context.Background(), "default/p"); err != nil {
			t.Fatal(err)
		}
	}
	// A pod being deleted: reported killed, then deleted.
	gone := pod.DeepCopy()
	gone.DeletionTimestamp = &metav1.Time{Time: time.Unix(990, 0)}
	gone.Status.Phase = v1.PodRunning
	gone.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.Unix(950, 0)}}}}
	if err := idx.Update(gone); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Nodes{typed, lean} {
		if err := n.SyncPod(context.Background(), "default/p"); err != nil {
			t.Fatal(err)
		}
	}
	if len(srv.requests) != 6 {
		t.Fatalf("requests %q, want a status write each, then a status write and a delete each", srv.requests)
	}
	for _, pair := range [][2]int{{0, 1}, {2, 4}, {3, 5}} {
		a, b := pair[0], pair[1]
		if srv.requests[a] != srv.requests[b] || !bytes.Equal(srv.bodies[a], srv.bodies[b]) {
			t.Errorf("request %q %q, the typed client sends %q %q", srv.requests[b], srv.bodies[b], srv.requests[a], srv.bodies[a])
		}
	}
	if want := "PUT /api/v1/namespaces/default/pods/p/status application/vnd.kubernetes.protobuf application/vnd.kubernetes.protobuf,application/json"; srv.requests[1] != want {
		t.Errorf("request %q, want %q", srv.requests[1], want)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(srv.bodies[1], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := obj.(*v1.Pod)
	st := sent.Status
	if st.Phase != v1.PodRunning || st.HostIP != NodeIP(3) || st.PodIP != "10.0.3.2" || len(st.ContainerStatuses) != 1 ||
		st.ContainerStatuses[0].State.Running == nil || !st.ContainerStatuses[0].Ready || st.StartTime == nil || len(st.Conditions) != 4 {
		t.Errorf("status sent %+v", st)
	}
	if sent.ResourceVersion != "7" || sent.Labels["app"] != "web" || sent.Spec.Containers[0].Image != "nginx" {
		t.Errorf("metadata or spec changed: %+v", sent)
	}
	obj, _, err = scheme.Codecs.UniversalDeserializer().Decode(srv.bodies[4], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := obj.(*v1.Pod).Status; st.Phase != v1.PodFailed || st.ContainerStatuses[0].State.Terminated == nil || st.ContainerStatuses[0].State.Terminated.ExitCode != 143 {
		t.Errorf("deleted pod's status sent %+v", st)
	}
	// The cache's objects are never modified.
	if cur, _, _ := idx.GetByKey("default/p"); cur.(*v1.Pod).Status.Phase != v1.PodRunning || len(cur.(*v1.Pod).Status.Conditions) != 1 {
		t.Errorf("cached pod modified: %+v", cur.(*v1.Pod).Status)
	}
	if pod.Status.Phase != orig.Status.Phase || len(pod.Status.Conditions) != 1 || pod.Status.StartTime != nil {
		t.Errorf("cached pod modified: %+v", pod.Status)
	}
}

func TestPodIPs(t *testing.T) {
	n := New(fake.NewClientset(), Options{Count: 300})
	if ip := n.podIP("hollow-node-258", "ns/a"); ip != "10.1.2.2" {
		t.Fatalf("first IP %s", ip)
	}
	if ip := n.podIP("hollow-node-258", "ns/b"); ip != "10.1.2.3" {
		t.Fatalf("second IP %s", ip)
	}
	if ip := n.podIP("hollow-node-258", "ns/a"); ip != "10.1.2.2" {
		t.Fatalf("same pod, other IP %s", ip)
	}
	n.releaseIP("hollow-node-258", "ns/a")
	if ip := n.podIP("hollow-node-258", "ns/c"); ip != "10.1.2.2" {
		t.Fatalf("released IP not reused: %s", ip)
	}
	for i := range 260 {
		n.podIP("hollow-node-0", string(rune('a'+i)))
	}
	if ip := n.podIP("hollow-node-0", "last"); ip != "10.0.0.255" {
		t.Fatalf("full range: %s", ip)
	}
}

// TestPutStatusErrors: a failed status write through the REST client is
// the API error the typed client returns (its Status decoded), so SyncPod
// still tells a deleted pod (404) and a conflict (409) apart from other
// failures; a success reads the whole answer.
func TestPutStatusErrors(t *testing.T) {
	for _, tc := range []struct {
		code  int
		body  string
		check func(error) bool
	}{
		{http.StatusNotFound, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"pods \"p\" not found"}`, apierrors.IsNotFound},
		{http.StatusConflict, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409,"message":"conflict"}`, apierrors.IsConflict},
		{http.StatusOK, `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"name":"` + strings.Repeat("c", 100000) + `"}]}}`, func(err error) bool { return err == nil }},
	} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.code)
			_, _ = w.Write([]byte(tc.body))
		}))
		client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
		if err != nil {
			t.Fatal(err)
		}
		n := New(client, Options{Count: 1})
		err = n.putStatus(context.Background(), &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}, nil)
		hs.Close()
		if !tc.check(err) {
			t.Errorf("answer %d: error %v", tc.code, err)
		}
	}
}

// BenchmarkPutStatus is one pod status write against a server answering
// with a pod-sized body: Do (reads the answer into a new slice) against
// putStatus (streams it into io.Discard). The server's own allocations
// are in both. go test ./internal/hollow -run XXX -bench PutStatus -benchmem
func BenchmarkPutStatus(b *testing.B) {
	answer := []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"name":"` + strings.Repeat("c", 4000) + `"}]}}`)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer hs.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, QPS: -1})
	if err != nil {
		b.Fatal(err)
	}
	n := New(client, Options{Count: 1})
	// A pod of a Deployment as the informer holds it, managedFields
	// included (they go back in every status write).
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f7c9b4-x7k2p", Namespace: "default", UID: "0b3c1f0e-5f7a-4c1e-9d57-3b0f2f8f6c11",
		ResourceVersion: "123457", Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b4"},
		GenerateName:    "web-5d8f7c9b4-",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7c9b4", UID: "5a1d2b7e-0c3f-4b8a-a1e2-77c9d0f1e2a3"}},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"5a1d2b7e-0c3f-4b8a-a1e2-77c9d0f1e2a3\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)}}}},
		Spec: v1.PodSpec{NodeName: "hollow-node-0", Containers: []v1.Container{{Name: "app", Image: "localhost/skiff/testapp:v1",
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: "File", ImagePullPolicy: "IfNotPresent"}},
			RestartPolicy: "Always", DNSPolicy: "ClusterFirst", SchedulerName: "default-scheduler", ServiceAccountName: "default"},
		Status: v1.PodStatus{Phase: v1.PodRunning, HostIP: "100.64.0.1", PodIP: "10.0.0.2", Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue}, {Type: v1.PodReady, Status: v1.ConditionTrue}},
			ContainerStatuses: []v1.ContainerStatus{{Name: "app", Image: "localhost/skiff/testapp:v1", ImageID: "hollow://localhost/skiff/testapp:v1",
				ContainerID: "hollow://0b3c1f0e-5f7a-4c1e-9d57-3b0f2f8f6c11/app", Ready: true}}}}
	ctx := context.Background()
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := n.rest.Put().UseProtobufAsDefault().Namespace(pod.Namespace).Resource("pods").Name(pod.Name).
				SubResource("status").Body(pod).Do(ctx).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("putStatus", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := n.putStatus(ctx, pod, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
