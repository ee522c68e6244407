package controllers

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// endpointsState is where one pod IP is in a Service's Endpoints and
// EndpointSlices.
type endpointsState struct {
	inReady, inNotReady bool // Endpoints subsets
	sliceReady          *bool
	port                int32
}

func (e *env) endpointsOf(svc, ip string) (endpointsState, error) {
	var st endpointsState
	ep, err := e.client.CoreV1().Endpoints(e.ns).Get(e.ctx, svc, metav1.GetOptions{})
	if err != nil {
		return st, fmt.Errorf("getting endpoints: %w", err)
	}
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			if a.IP == ip {
				st.inReady = true
				if len(ss.Ports) > 0 {
					st.port = ss.Ports[0].Port
				}
			}
		}
		for _, a := range ss.NotReadyAddresses {
			if a.IP == ip {
				st.inNotReady = true
			}
		}
	}
	slices, err := e.client.DiscoveryV1().EndpointSlices(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return st, fmt.Errorf("listing endpointslices: %w", err)
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) > 0 && ep.Addresses[0] == ip {
				st.sliceReady = ep.Conditions.Ready
			}
		}
	}
	return st, nil
}

func TestEndpointsFollowReadiness(t *testing.T) {
	e := start(t, 2)
	svc := func(name string, mutate func(*v1.Service)) {
		s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []v1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}},
		}}
		if mutate != nil {
			mutate(s)
		}
		if _, err := e.client.CoreV1().Services(e.ns).Create(e.ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating service %s: %v", name, err)
		}
	}
	svc("web", nil)
	svc("web-headless", func(s *v1.Service) { s.Spec.ClusterIP = v1.ClusterIPNone })
	svc("web-all", func(s *v1.Service) { s.Spec.PublishNotReadyAddresses = true })
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("web", 3, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	pods := e.waitRunning(t, "web", 3, 30*time.Second)
	for _, name := range []string{"web", "web-headless", "web-all"} {
		for _, p := range pods {
			waitFor(t, 10*time.Second, fmt.Sprintf("pod %s ready in %s", p.Status.PodIP, name), func() (bool, error) {
				st, err := e.endpointsOf(name, p.Status.PodIP)
				return st.inReady && st.sliceReady != nil && *st.sliceReady, fmt.Errorf("%+v (%v)", st, err)
			})
		}
	}
	// The named target port resolves to the container port.
	if st, err := e.endpointsOf("web", pods[0].Status.PodIP); err != nil || st.port != 8080 {
		t.Errorf("endpoint port = %d (%v), want 8080 from the named port", st.port, err)
	}

	pod := pods[0]
	ip := pod.Status.PodIP
	measure := func(ready bool) time.Duration {
		t.Helper()
		start := time.Now()
		e.setPodReady(t, pod.Name, ready)
		var lat time.Duration
		waitFor(t, 5*time.Second, fmt.Sprintf("endpoints to show %s ready=%v", ip, ready), func() (bool, error) {
			st, err := e.endpointsOf("web", ip)
			ok := st.inReady == ready && st.inNotReady == !ready && st.sliceReady != nil && *st.sliceReady == ready
			lat = time.Since(start)
			return ok, fmt.Errorf("%+v (%v)", st, err)
		})
		return lat
	}
	down := measure(false)
	if st, err := e.endpointsOf("web-all", ip); err != nil || !st.inReady {
		t.Errorf("publishNotReadyAddresses service dropped the not-ready pod: %+v (%v)", st, err)
	}
	if st, err := e.endpointsOf("web-headless", ip); err != nil || st.inReady || !st.inNotReady {
		t.Errorf("headless service with a not-ready pod: %+v (%v)", st, err)
	}
	up := measure(true)
	t.Logf("readiness to endpoints latency (status write, controllers, endpoints and slice visible): not-ready %v, ready %v", down, up)
	// "Within milliseconds": polling adds up to 20 ms.
	for _, l := range []time.Duration{down, up} {
		if l > 500*time.Millisecond {
			t.Errorf("endpoints followed readiness after %v, want well under 500ms", l)
		}
	}
	// Pods that go away leave the endpoints.
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(0)) })
	waitFor(t, 20*time.Second, "endpoints to empty", func() (bool, error) {
		ep, err := e.client.CoreV1().Endpoints(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(ep.Subsets) == 0, fmt.Errorf("subsets %+v", ep.Subsets)
	})
}
