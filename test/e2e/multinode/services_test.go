package multinode

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// backends runs one testapp pod labelled app=<app> on every node.
func backends(t *testing.T, c *cluster, ns, app string) []*v1.Pod {
	t.Helper()
	var pods []*v1.Pod
	for _, n := range c.nodes {
		pods = append(pods, testappPod(app+"-"+strings.TrimPrefix(n.name, "skiffmn-"), n.name, map[string]string{"app": app}))
	}
	return runPods(t, c, ns, pods...)
}

func names(pods []*v1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// service creates a Service on port 80 to the pods' named port "http".
func service(t *testing.T, c *cluster, ns, name, app string, typ v1.ServiceType) *v1.Service {
	t.Helper()
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": app},
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	out, err := c.client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s: %v", name, err)
	}
	return out
}

// reachAll GETs url from nsPath until every one of want has answered
// (random balancing: 3 backends all answer within a few dozen tries) and
// fails if anything else answers.
func reachAll(t *testing.T, nsPath, url string, want []string) {
	t.Helper()
	seen := map[string]bool{}
	allowed := map[string]bool{}
	for _, w := range want {
		allowed[w] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for len(seen) < len(want) && time.Now().Before(deadline) {
		got, err := get(nsPath, url)
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !allowed[got] {
			t.Fatalf("GET %s from %s answered by %q, not one of %v", url, nsLabel(nsPath), got, want)
		}
		seen[got] = true
	}
	if len(seen) < len(want) {
		t.Fatalf("GET %s from %s: only %v of %v answered within 60s (last error %v)", url, nsLabel(nsPath), seen, want, lastErr)
	}
}

// A ClusterIP service balances over backends on all three nodes, from a
// pod and from every node.
func TestClusterIPFromPodsAndNodes(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := backends(t, c, ns, "web")
	svc := service(t, c, ns, "web", "web", v1.ServiceTypeClusterIP)
	u := url(svc.Spec.ClusterIP, 80, "/hostname")
	reachAll(t, podNetns(t, c, pods[0]), u, names(pods))
	for _, n := range c.nodes {
		reachAll(t, n.nodeNetns(), u, names(pods))
	}
}

// A NodePort reaches backends on every node from the host, through any
// node's address.
func TestNodePortFromHost(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := backends(t, c, ns, "np")
	svc := service(t, c, ns, "np", "np", v1.ServiceTypeNodePort)
	np := svc.Spec.Ports[0].NodePort
	if np == 0 {
		t.Fatalf("no node port allocated: %+v", svc.Spec.Ports)
	}
	for _, n := range c.nodes {
		reachAll(t, "", url(n.ip, np, "/hostname"), names(pods))
	}
}

// A LoadBalancer service gets an address from the built-in load balancer
// and the host reaches the backends through it.
func TestLoadBalancerFromHost(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := backends(t, c, ns, "lb")
	svc := service(t, c, ns, "lb", "lb", v1.ServiceTypeLoadBalancer)
	var ip string
	deadline := time.Now().Add(60 * time.Second)
	for ip == "" {
		got, err := c.client.CoreV1().Services(ns).Get(context.Background(), svc.Name, metav1.GetOptions{})
		if err == nil && len(got.Status.LoadBalancer.Ingress) > 0 {
			ip = got.Status.LoadBalancer.Ingress[0].IP
		}
		if time.Now().After(deadline) {
			t.Fatalf("no load balancer address after 60s: %v %+v", err, got.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	reachAll(t, "", url(ip, 80, "/hostname"), names(pods))
}

// A backend that turns unready leaves the service's endpoints and stops
// being answered from other nodes; ready again, it comes back.
func TestEndpointsFollowReadiness(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := backends(t, c, ns, "ready")
	svc := service(t, c, ns, "ready", "ready", v1.ServiceTypeClusterIP)
	u := url(svc.Spec.ClusterIP, 80, "/hostname")
	client := podNetns(t, c, pods[0])
	reachAll(t, client, u, names(pods))

	gone := pods[2]
	if _, err := get(c.nodes[2].nodeNetns(), url(gone.Status.PodIP, 8080, "/readyz?set=fail")); err == nil {
		t.Fatal("readyz?set=fail answered 200")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), gone.Name, metav1.GetOptions{})
		if err == nil && !podReady(p) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s still Ready 60s after failing its probe", gone.Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Once the rule is live, 30 requests never reach the unready pod.
	rest := names(pods[:2])
	deadline = time.Now().Add(30 * time.Second)
	for clean := 0; clean < 30; {
		got, err := get(client, u)
		switch {
		case err != nil:
		case got == gone.Name:
			clean = 0
		default:
			clean++
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unready pod %s was still answering through the service after 30s", gone.Name)
		}
	}
	reachAll(t, client, u, rest)

	if _, err := get(c.nodes[2].nodeNetns(), url(gone.Status.PodIP, 8080, "/readyz?set=ok")); err != nil {
		t.Fatal(err)
	}
	reachAll(t, client, u, names(pods))
}

// Cluster DNS answers a pod's queries through the kube-dns service: a
// service name gives its ClusterIP, a headless service one record per
// ready pod on every node.
func TestDNSFromPods(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	pods := backends(t, c, ns, "dns")
	svc := service(t, c, ns, "web", "dns", v1.ServiceTypeClusterIP)
	headless := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "headless"},
		Spec: v1.ServiceSpec{
			ClusterIP: v1.ClusterIPNone, Selector: map[string]string{"app": "dns"},
			Ports: []v1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
	if _, err := c.client.CoreV1().Services(ns).Create(context.Background(), headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeDNS, err := c.client.CoreV1().Services("kube-system").Get(context.Background(), "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-dns service: %v", err)
	}
	server := net.JoinHostPort(kubeDNS.Spec.ClusterIP, "53")
	var podIPs []string
	for _, p := range pods {
		podIPs = append(podIPs, p.Status.PodIP)
	}
	sort.Strings(podIPs)

	for _, from := range pods {
		nsPath := podNetns(t, c, from)
		waitAnswer(t, nsPath, server, fmt.Sprintf("web.%s.svc.cluster.local.", ns), []string{svc.Spec.ClusterIP})
		waitAnswer(t, nsPath, server, fmt.Sprintf("headless.%s.svc.cluster.local.", ns), podIPs)
	}
}

// waitAnswer queries name (A) from inside nsPath until the answer's
// addresses are exactly want.
func waitAnswer(t *testing.T, nsPath, server, name string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	var err error
	for time.Now().Before(deadline) {
		got, err = queryA(nsPath, server, name)
		if err == nil && strings.Join(got, ",") == strings.Join(want, ",") {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("A %s from %s via %s: %v, %v; want %v", name, nsPath, server, got, err, want)
}

func queryA(nsPath, server, name string) ([]string, error) {
	var conn net.Conn
	if err := inNetns(nsPath, func() (err error) {
		conn, err = net.DialTimeout("udp", server, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	co := &mdns.Conn{Conn: conn}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, err
	}
	if r.Rcode != mdns.RcodeSuccess {
		return nil, fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return out, nil
}

// StatefulSet pods get stable DNS names under their governing headless
// service (pod-0.svc.ns.svc.cluster.local), answered on every node.
func TestDNSStatefulSetPods(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	ctx := context.Background()
	headless := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: v1.ServiceSpec{
			ClusterIP: v1.ClusterIPNone, Selector: map[string]string{"app": "db"},
			Ports: []v1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
	if _, err := c.client.CoreV1().Services(ns).Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	tmpl := testappPod("", "", map[string]string{"app": "db"})
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: "db",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template:            v1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
	if _, err := c.client.AppsV1().StatefulSets(ns).Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := map[string]*v1.Pod{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(pods) < 2 {
		for _, name := range []string{"db-0", "db-1"} {
			p, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.PodIP != "" && podReady(p) {
				pods[name] = p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("statefulset pods not ready after 2m: have %d", len(pods))
		}
		time.Sleep(250 * time.Millisecond)
	}
	kubeDNS, err := c.client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort(kubeDNS.Spec.ClusterIP, "53")
	// Ask from a pod on each node.
	clients := backends(t, c, ns, "client")
	for _, cl := range clients {
		nsPath := podNetns(t, c, cl)
		for name, p := range pods {
			waitAnswer(t, nsPath, server, fmt.Sprintf("%s.db.%s.svc.cluster.local.", name, ns), []string{p.Status.PodIP})
		}
	}
}
