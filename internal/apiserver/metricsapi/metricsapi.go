// Package metricsapi serves metrics.k8s.io/v1beta1 (NodeMetrics and
// PodMetrics, what `kubectl top` and the HPA read) inside the API server,
// in place of a separately deployed metrics-server.
//
// Each request reads the kubelets' /stats/summary?only_cpu_and_memory=true
// through the API server's node proxy, in parallel, and answers from it:
// CPU is the kubelet's usageNanoCores (a rate over its last sampling
// window), memory the working set, as metrics-server reports them. A node
// that does not answer is left out, as metrics-server does; a pod whose
// containers have no CPU rate yet (just started) is left out too.
//
// Contract: GET only (get and list, with labelSelector, and fieldSelector
// metadata.name); errors are metav1.Status objects.
package metricsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"skiff.dev/skiff/internal/apiserver"
	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
)

// GroupVersion is metrics.k8s.io/v1beta1.
var GroupVersion = metricsv1beta1.SchemeGroupVersion

// Config is the API's view of the cluster.
type Config struct {
	// Nodes lists the nodes; Pods lists the pods of a namespace ("" for
	// all).
	Nodes func(ctx context.Context) ([]corev1.Node, error)
	Pods  func(ctx context.Context, namespace string) ([]corev1.Pod, error)
	// Summary reads a node's kubelet summary.
	Summary func(ctx context.Context, node *corev1.Node) (*kubeletserver.Summary, error)
	// Window is reported as the measurement window (default 10 s, the
	// kubelet's sampling interval).
	Window time.Duration
	// Timeout bounds the wait for the kubelets (default 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// API is the metrics.k8s.io handler.
type API struct{ cfg Config }

// New builds the API.
func New(cfg Config) (*API, error) {
	if cfg.Nodes == nil || cfg.Pods == nil || cfg.Summary == nil {
		return nil, fmt.Errorf("creating metrics api: nodes, pods and summary sources are required")
	}
	if cfg.Window == 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &API{cfg: cfg}, nil
}

// Group is the registration for apiserver.Config.Delegated.
func (a *API) Group() apiserver.DelegatedGroup {
	verbs := metav1.Verbs{"get", "list"}
	return apiserver.DelegatedGroup{
		GroupVersion: GroupVersion,
		Resources: []metav1.APIResource{
			{Name: "nodes", SingularName: "", Namespaced: false, Kind: "NodeMetrics", Verbs: verbs},
			{Name: "pods", SingularName: "", Namespaced: true, Kind: "PodMetrics", Verbs: verbs},
		},
		Handler: a,
	}
}

// request is a parsed metrics URL.
type request struct {
	resource, namespace, name string
	labels                    labels.Selector
	fieldName                 string
}

func parse(r *http.Request) (request, error) {
	rest := strings.TrimPrefix(r.URL.Path, "/apis/"+GroupVersion.String()+"/")
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	var q request
	switch {
	case len(parts) == 1 && (parts[0] == "nodes" || parts[0] == "pods"):
		q.resource = parts[0]
	case len(parts) == 2 && (parts[0] == "nodes" || parts[0] == "pods"):
		q.resource, q.name = parts[0], parts[1]
	case len(parts) >= 3 && len(parts) <= 4 && parts[0] == "namespaces" && parts[2] == "pods":
		q.resource, q.namespace = "pods", parts[1]
		if len(parts) == 4 {
			q.name = parts[3]
		}
	default:
		return q, apierrors.NewNotFound(schema.GroupResource{Group: GroupVersion.Group}, rest)
	}
	if q.resource == "pods" && q.name != "" && q.namespace == "" {
		return q, apierrors.NewNotFound(schema.GroupResource{Group: GroupVersion.Group, Resource: "pods"}, q.name)
	}
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		return q, apierrors.NewBadRequest(fmt.Sprintf("invalid labelSelector: %v", err))
	}
	q.labels = sel
	if fs := r.URL.Query().Get("fieldSelector"); fs != "" {
		f, err := fields.ParseSelector(fs)
		if err != nil {
			return q, apierrors.NewBadRequest(fmt.Sprintf("invalid fieldSelector: %v", err))
		}
		for _, req := range f.Requirements() {
			if req.Field != "metadata.name" || req.Operator == "!=" {
				return q, apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported: only metadata.name=", req.Field))
			}
			q.fieldName = req.Value
		}
	}
	return q, nil
}

// ServeHTTP serves the group's resources.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: GroupVersion.Group}, strings.ToLower(r.Method)))
		return
	}
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: GroupVersion.Group}, "watch"))
		return
	}
	q, err := parse(r)
	if err != nil {
		writeStatus(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
	defer cancel()
	var obj any
	if q.resource == "nodes" {
		obj, err = a.nodes(ctx, q)
	} else {
		obj, err = a.pods(ctx, q)
	}
	if err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(obj)
}

// summaries reads the nodes' summaries in parallel; failures are logged
// and skipped.
func (a *API) summaries(ctx context.Context, nodes []corev1.Node) map[string]*kubeletserver.Summary {
	out := make(map[string]*kubeletserver.Summary, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range nodes {
		n := &nodes[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := a.cfg.Summary(ctx, n)
			if err != nil {
				a.cfg.Logger.Debug("reading node summary for metrics", "node", n.Name, "err", err)
				return
			}
			mu.Lock()
			out[n.Name] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (a *API) nodes(ctx context.Context, q request) (any, error) {
	all, err := a.cfg.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var nodes []corev1.Node
	for _, n := range all {
		if (q.name == "" || n.Name == q.name) && (q.fieldName == "" || n.Name == q.fieldName) && q.labels.Matches(labels.Set(n.Labels)) {
			nodes = append(nodes, n)
		}
	}
	sums := a.summaries(ctx, nodes)
	list := &metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: GroupVersion.String()}, Items: []metricsv1beta1.NodeMetrics{}}
	for _, n := range nodes {
		m, ok := NodeMetrics(&n, sums[n.Name], a.cfg.Window)
		if ok {
			list.Items = append(list.Items, m)
		}
	}
	if q.name != "" {
		if len(list.Items) == 0 {
			return nil, apierrors.NewNotFound(schema.GroupResource{Group: GroupVersion.Group, Resource: "nodes"}, q.name)
		}
		m := list.Items[0]
		m.TypeMeta = metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: GroupVersion.String()}
		return &m, nil
	}
	return list, nil
}

func (a *API) pods(ctx context.Context, q request) (any, error) {
	all, err := a.cfg.Pods(ctx, q.namespace)
	if err != nil {
		return nil, err
	}
	wanted := map[string]*corev1.Pod{}
	onNode := map[string]bool{}
	for i := range all {
		p := &all[i]
		if p.Spec.NodeName == "" || (q.name != "" && p.Name != q.name) || (q.fieldName != "" && p.Name != q.fieldName) || !q.labels.Matches(labels.Set(p.Labels)) {
			continue
		}
		wanted[p.Namespace+"/"+p.Name] = p
		onNode[p.Spec.NodeName] = true
	}
	var nodes []corev1.Node
	if len(wanted) > 0 {
		allNodes, err := a.cfg.Nodes(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range allNodes {
			if onNode[n.Name] {
				nodes = append(nodes, n)
			}
		}
	}
	sums := a.summaries(ctx, nodes)
	list := &metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: GroupVersion.String()}, Items: []metricsv1beta1.PodMetrics{}}
	for _, n := range nodes {
		s := sums[n.Name]
		if s == nil {
			continue
		}
		for _, ps := range s.Pods {
			p := wanted[ps.PodRef.Namespace+"/"+ps.PodRef.Name]
			if p == nil || string(p.UID) != ps.PodRef.UID || p.Spec.NodeName != n.Name {
				continue
			}
			if m, ok := PodMetrics(p, &ps, a.cfg.Window); ok {
				list.Items = append(list.Items, m)
			}
		}
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	if q.name != "" {
		if len(list.Items) == 0 {
			return nil, apierrors.NewNotFound(schema.GroupResource{Group: GroupVersion.Group, Resource: "pods"}, q.name)
		}
		m := list.Items[0]
		m.TypeMeta = metav1.TypeMeta{Kind: "PodMetrics", APIVersion: GroupVersion.String()}
		return &m, nil
	}
	return list, nil
}

// NodeMetrics converts a node's summary; ok is false while it lacks a CPU
// rate or memory.
func NodeMetrics(n *corev1.Node, s *kubeletserver.Summary, window time.Duration) (metricsv1beta1.NodeMetrics, bool) {
	if s == nil || s.Node.CPU == nil || s.Node.CPU.UsageNanoCores == nil || s.Node.Memory == nil || s.Node.Memory.WorkingSetBytes == nil {
		return metricsv1beta1.NodeMetrics{}, false
	}
	return metricsv1beta1.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.Now()},
		Timestamp:  s.Node.CPU.Time,
		Window:     metav1.Duration{Duration: window},
		Usage:      usage(*s.Node.CPU.UsageNanoCores, *s.Node.Memory.WorkingSetBytes),
	}, true
}

// PodMetrics converts a pod's summary; ok is false unless every container
// has a CPU rate and memory.
func PodMetrics(p *corev1.Pod, s *kubeletserver.PodStats, window time.Duration) (metricsv1beta1.PodMetrics, bool) {
	m := metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: metav1.Now()},
		Window:     metav1.Duration{Duration: window},
		Containers: []metricsv1beta1.ContainerMetrics{},
	}
	if len(s.Containers) == 0 {
		return m, false
	}
	for _, c := range s.Containers {
		if c.CPU == nil || c.CPU.UsageNanoCores == nil || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
			return m, false
		}
		if c.CPU.Time.After(m.Timestamp.Time) {
			m.Timestamp = c.CPU.Time
		}
		m.Containers = append(m.Containers, metricsv1beta1.ContainerMetrics{Name: c.Name, Usage: usage(*c.CPU.UsageNanoCores, *c.Memory.WorkingSetBytes)})
	}
	return m, true
}

func usage(nanoCores, workingSet uint64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(nanoCores), resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(int64(workingSet), resource.BinarySI),
	}
}

// writeStatus writes err as a metav1.Status.
func writeStatus(w http.ResponseWriter, err error) {
	var st metav1.Status
	if s, ok := err.(apierrors.APIStatus); ok {
		st = s.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
	}
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(&st)
}
