package admission

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// memPolicy is an in-memory PolicyGetter.
type memPolicy struct {
	mu      sync.Mutex
	ranges  []corev1.LimitRange
	quotas  map[string]*corev1.ResourceQuota
	classes []storagev1.StorageClass
}

func (m *memPolicy) ListLimitRanges(context.Context, string) ([]corev1.LimitRange, error) {
	return m.ranges, nil
}

func (m *memPolicy) ListResourceQuotas(context.Context, string) ([]corev1.ResourceQuota, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []corev1.ResourceQuota
	for _, q := range m.quotas {
		out = append(out, *q.DeepCopy())
	}
	return out, nil
}

func (m *memPolicy) UpdateResourceQuotaStatus(_ context.Context, _, name string, fn func(*corev1.ResourceQuota) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.quotas[name].DeepCopy()
	if err := fn(q); err != nil {
		return err
	}
	m.quotas[name] = q
	return nil
}

func (m *memPolicy) ListStorageClasses(context.Context) ([]storagev1.StorageClass, error) {
	return m.classes, nil
}

func rl(pairs ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		out[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return out
}

func podWith(name string, req, lim corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}},
	}
}

func TestLimitRangeDefaultsAndBounds(t *testing.T) {
	lr := corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:                 corev1.LimitTypeContainer,
		Default:              rl("cpu", "500m", "memory", "256Mi"),
		DefaultRequest:       rl("cpu", "200m", "memory", "128Mi"),
		Max:                  rl("cpu", "1"),
		Min:                  rl("cpu", "50m"),
		MaxLimitRequestRatio: rl("cpu", "4"),
	}, {
		Type: corev1.LimitTypePersistentVolumeClaim, Min: rl("storage", "1Gi"), Max: rl("storage", "10Gi"),
	}}}}
	l := NewLimitRanger(&memPolicy{ranges: []corev1.LimitRange{lr}})
	ctx := context.Background()

	pod := podWith("p", nil, rl("memory", "1Gi"))
	if err := l.AdmitPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	res := pod.Spec.Containers[0].Resources
	if got := res.Limits.Cpu().String(); got != "500m" {
		t.Errorf("default cpu limit = %s, want 500m", got)
	}
	if got := res.Limits.Memory().String(); got != "1Gi" {
		t.Errorf("memory limit = %s, want the pod's own 1Gi", got)
	}
	if got := res.Requests.Cpu().String(); got != "200m" {
		t.Errorf("default cpu request = %s, want 200m", got)
	}
	if err := l.ValidatePod(ctx, pod); err != nil {
		t.Errorf("defaulted pod refused: %v", err)
	}

	tests := []struct {
		name     string
		req, lim corev1.ResourceList
		want     string
	}{
		{"above max", rl("cpu", "1"), rl("cpu", "2"), "maximum cpu usage per Container is 1, but limit is 2"},
		{"no limit", rl("cpu", "100m"), nil, "maximum cpu usage per Container is 1.  No limit is specified"},
		{"below min", rl("cpu", "10m"), rl("cpu", "40m"), "minimum cpu usage per Container is 50m, but request is 10m"},
		{"ratio", rl("cpu", "100m"), rl("cpu", "800m"), "cpu max limit to request ratio per Container is 4, but provided ratio is 8.000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.ValidatePod(ctx, podWith("p", tt.req, tt.lim))
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want forbidden containing %q", err, tt.want)
			}
		})
	}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}}
	pvc.Spec.Resources.Requests = rl("storage", "20Gi")
	err := l.ValidateClaim(ctx, pvc)
	if want := "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("claim: got %v, want %q", err, want)
	}
}

func quotaObj(name string, hard, used corev1.ResourceList) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
		Status:     corev1.ResourceQuotaStatus{Hard: hard, Used: used},
	}
}

var podsGR = schema.GroupResource{Resource: "pods"}

func TestQuotaChargesAndRefuses(t *testing.T) {
	store := &memPolicy{quotas: map[string]*corev1.ResourceQuota{
		"q": quotaObj("q", rl("pods", "2", "requests.cpu", "1"), rl("pods", "1", "requests.cpu", "200m")),
	}}
	q := NewQuota(store)
	ctx := context.Background()
	if err := q.Validate(ctx, podsGR, podWith("a", rl("cpu", "300m"), nil)); err != nil {
		t.Fatalf("first create: %v", err)
	}
	used := store.quotas["q"].Status.Used
	if used.Pods().String() != "2" || used.Name("requests.cpu", resource.DecimalSI).String() != "500m" {
		t.Errorf("used = %v, want pods=2 requests.cpu=500m", used)
	}
	err := q.Validate(ctx, podsGR, podWith("b", rl("cpu", "100m"), nil))
	want := `pods "b" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	err = q.Validate(ctx, podsGR, podWith("c", nil, nil))
	if want := "failed quota: q: must specify requests.cpu"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
	// A terminal pod is not charged.
	done := podWith("d", nil, nil)
	done.Status.Phase = corev1.PodSucceeded
	if err := q.Validate(ctx, podsGR, done); err != nil {
		t.Errorf("terminal pod: %v", err)
	}
}

func TestQuotaStatusUnknown(t *testing.T) {
	quota := quotaObj("q", rl("count/deployments.apps", "1"), nil)
	quota.Status = corev1.ResourceQuotaStatus{}
	q := NewQuota(&memPolicy{quotas: map[string]*corev1.ResourceQuota{"q": quota}})
	err := q.Validate(context.Background(), schema.GroupResource{Group: "apps", Resource: "deployments"},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}})
	if want := "status unknown for quota: q, resources: count/deployments.apps"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestQuotaConcurrentCreatesNeverExceed(t *testing.T) {
	store := &memPolicy{quotas: map[string]*corev1.ResourceQuota{
		"q": quotaObj("q", rl("count/configmaps", "10"), rl("count/configmaps", "0")),
	}}
	q := NewQuota(store)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			err := q.Validate(context.Background(), schema.GroupResource{Resource: "configmaps"},
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}})
			if err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 10 {
		t.Errorf("admitted %d creates, want exactly 10", admitted)
	}
}

func TestDefaultStorageClass(t *testing.T) {
	p := &policyPlugins{get: &memPolicy{classes: []storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "slow"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "local-path", Annotations: map[string]string{IsDefaultClassAnnotation: "true"}}},
	}}}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := p.defaultStorageClass(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
		t.Errorf("storageClassName = %v, want local-path", pvc.Spec.StorageClassName)
	}
	empty := ""
	pvc = &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &empty}}
	_ = p.defaultStorageClass(context.Background(), pvc)
	if *pvc.Spec.StorageClassName != "" {
		t.Errorf("explicit empty class replaced by %q", *pvc.Spec.StorageClassName)
	}
}
