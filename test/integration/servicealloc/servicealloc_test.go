// Package servicealloc_test drives ClusterIP and NodePort allocation
// through the real API server, with client-go and real kubectl.
package servicealloc_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

var serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")

func nodePortService(ns, name string, nodePort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, NodePort: nodePort}},
		},
	}
}

func clusterIPService(ns, name, ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: ip,
			Selector:  map[string]string{"app": name},
			Ports:     []corev1.ServicePort{{Port: 80}},
		},
	}
}

// eventually polls cond for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServiceAllocation(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	svcs := c.Client.CoreV1().Services("default")
	alloc := c.Server.ServiceAllocator()

	t.Run("kubernetes service", func(t *testing.T) {
		k, err := svcs.Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if k.Spec.ClusterIP != "10.43.0.1" || len(k.Spec.ClusterIPs) != 1 || k.Spec.ClusterIPs[0] != "10.43.0.1" {
			t.Fatalf("kubernetes service: clusterIP %q clusterIPs %v", k.Spec.ClusterIP, k.Spec.ClusterIPs)
		}
		if !alloc.IPAllocated("10.43.0.1") {
			t.Fatal("10.43.0.1 is not marked allocated")
		}
	})

	t.Run("requested values honoured or refused", func(t *testing.T) {
		_, err := svcs.Create(ctx, clusterIPService("default", "dup-ip", "10.43.0.1"), metav1.CreateOptions{})
		want := `spec.clusterIPs: Invalid value: ["10.43.0.1"]: failed to allocate IP 10.43.0.1: provided IP is already allocated`
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
		_, err = svcs.Create(ctx, clusterIPService("default", "far-ip", "10.99.0.1"), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "is not in the valid range. The range of valid IPs is 10.43.0.0/16") {
			t.Fatalf("out-of-range IP: got %v", err)
		}
		s, err := svcs.Create(ctx, clusterIPService("default", "fixed-ip", "10.43.0.53"), metav1.CreateOptions{})
		if err != nil || s.Spec.ClusterIP != "10.43.0.53" {
			t.Fatalf("requested IP: %v %v", s, err)
		}
		np, err := svcs.Create(ctx, nodePortService("default", "fixed-port", 30080), metav1.CreateOptions{})
		if err != nil || np.Spec.Ports[0].NodePort != 30080 {
			t.Fatalf("requested node port: %v %v", np, err)
		}
		_, err = svcs.Create(ctx, nodePortService("default", "dup-port", 30080), metav1.CreateOptions{})
		want = "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
		for _, name := range []string{"fixed-ip", "fixed-port"} {
			if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if alloc.IPAllocated("10.43.0.53") || alloc.PortAllocated(30080) {
			t.Fatal("delete did not release the IP and port")
		}
		if _, err := svcs.Create(ctx, nodePortService("default", "dup-port", 30080), metav1.CreateOptions{}); err != nil {
			t.Fatalf("re-using a released port: %v", err)
		}
		_ = svcs.Delete(ctx, "dup-port", metav1.DeleteOptions{})
	})

	t.Run("headless and ExternalName get no IP", func(t *testing.T) {
		h, err := svcs.Create(ctx, clusterIPService("default", "headless", "None"), metav1.CreateOptions{})
		if err != nil || h.Spec.ClusterIP != "None" {
			t.Fatalf("headless: %v %v", h, err)
		}
		x, err := svcs.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "ext"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
		}, metav1.CreateOptions{})
		if err != nil || x.Spec.ClusterIP != "" {
			t.Fatalf("ExternalName: %v %v", x, err)
		}
	})

	t.Run("type changes", func(t *testing.T) {
		s, err := svcs.Create(ctx, clusterIPService("default", "flip", ""), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Type = corev1.ServiceTypeNodePort
		s, err = svcs.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		port := s.Spec.Ports[0].NodePort
		if port < 30000 || port > 32767 || !alloc.PortAllocated(int(port)) {
			t.Fatalf("ClusterIP->NodePort got node port %d", port)
		}
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.ExternalTrafficPolicy = ""
		s, err = svcs.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Spec.Ports[0].NodePort != 0 {
			t.Fatalf("NodePort->ClusterIP kept node port %d", s.Spec.Ports[0].NodePort)
		}
		eventually(t, fmt.Sprintf("node port %d is released", port), func() bool { return !alloc.PortAllocated(int(port)) })

		lb := nodePortService("default", "lb-local", 0)
		lb.Spec.Type = corev1.ServiceTypeLoadBalancer
		lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		lb, err = svcs.Create(ctx, lb, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lb.Spec.Ports[0].NodePort == 0 || lb.Spec.HealthCheckNodePort == 0 {
			t.Fatalf("Local LoadBalancer: node port %d health check %d", lb.Spec.Ports[0].NodePort, lb.Spec.HealthCheckNodePort)
		}
	})

	t.Run("200 concurrent creates", func(t *testing.T) {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "many"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		baseIPs, basePorts := alloc.Usage()
		many := c.Client.CoreV1().Services("many")
		var mu sync.Mutex
		ips := map[string]string{}
		ports := map[int32]string{}
		var wg sync.WaitGroup
		for g := 0; g < 20; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					name := fmt.Sprintf("s-%d-%d", g, i)
					var s *corev1.Service
					var err error
					if i%2 == 0 {
						s, err = many.Create(ctx, nodePortService("many", name, 0), metav1.CreateOptions{})
					} else {
						s, err = many.Create(ctx, clusterIPService("many", name, ""), metav1.CreateOptions{})
					}
					if err != nil {
						t.Errorf("creating %s: %v", name, err)
						return
					}
					mu.Lock()
					if other, dup := ips[s.Spec.ClusterIP]; dup {
						t.Errorf("%s given to %s and %s", s.Spec.ClusterIP, other, name)
					}
					ips[s.Spec.ClusterIP] = name
					if np := s.Spec.Ports[0].NodePort; np != 0 {
						if other, dup := ports[np]; dup {
							t.Errorf("node port %d given to %s and %s", np, other, name)
						}
						ports[np] = name
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(ips) != 200 || len(ports) != 100 {
			t.Fatalf("got %d distinct IPs and %d node ports, want 200 and 100", len(ips), len(ports))
		}
		for ip := range ips {
			if !serviceCIDR.Contains(netip.MustParseAddr(ip)) {
				t.Errorf("%s outside %s", ip, serviceCIDR)
			}
		}
		if gotIPs, gotPorts := alloc.Usage(); gotIPs != baseIPs+200 || gotPorts != basePorts+100 {
			t.Fatalf("allocator holds %d IPs and %d ports, want %d and %d", gotIPs, gotPorts, baseIPs+200, basePorts+100)
		}
		list, err := many.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sem := make(chan struct{}, 20)
		for _, s := range list.Items {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := many.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
					t.Errorf("deleting %s: %v", s.Name, err)
				}
			}()
		}
		wg.Wait()
		for ip := range ips {
			if alloc.IPAllocated(ip) {
				t.Errorf("%s still allocated after its service was deleted", ip)
			}
		}
		eventually(t, "usage returns to the baseline", func() bool {
			i, p := alloc.Usage()
			return i == baseIPs && p == basePorts
		})
	})
}

// TestKubectlCreateServiceNodePort checks what a user sees with real kubectl.
func TestKubectlCreateServiceNodePort(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c := framework.Start(t, framework.Options{})
	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			name := "x" + strings.ReplaceAll(v, ".", "")
			if out, err := c.Kubectl(t, bin, "", "create", "service", "nodeport", name, "--tcp=80:8080"); err != nil {
				t.Fatalf("kubectl create service: %v\n%s", err, out)
			}
			out, err := c.Kubectl(t, bin, "", "get", "svc", name, "--no-headers")
			if err != nil {
				t.Fatalf("kubectl get svc: %v\n%s", err, out)
			}
			// NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE
			f := strings.Fields(out)
			if len(f) < 6 || f[0] != name || f[1] != "NodePort" {
				t.Fatalf("unexpected row %q", out)
			}
			ip, err := netip.ParseAddr(f[2])
			if err != nil || !serviceCIDR.Contains(ip) {
				t.Fatalf("CLUSTER-IP %q not in %s", f[2], serviceCIDR)
			}
			// PORT(S) is 80:3xxxx/TCP.
			port, proto, _ := strings.Cut(strings.TrimPrefix(f[4], "80:"), "/")
			np, err := strconv.Atoi(port)
			if err != nil || np < 30000 || np > 32767 || proto != "TCP" {
				t.Fatalf("PORT(S) %q has no node port in 30000-32767", f[4])
			}
			// A second service asking for the same node port is refused
			// with upstream's message.
			svc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s-dup}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: %d}]
`, name, np)
			out, err = c.Kubectl(t, bin, svc, "create", "-f", "-")
			if err == nil || !strings.Contains(out, fmt.Sprintf("spec.ports[0].nodePort: Invalid value: %d: provided port is already allocated", np)) {
				t.Fatalf("duplicate node port: err %v\n%s", err, out)
			}
		})
	}
}
