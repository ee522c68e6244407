package policy

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

func TestQuotaAndLimitRange(t *testing.T) {
	c := framework.Start(t, framework.Options{ControllerManager: true})
	ctx := context.Background()
	ns := "default"
	lr := &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "limits", Namespace: ns},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:    corev1.LimitTypeContainer,
			Default: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")},
			Max:     corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
		}}},
	}
	if _, err := c.Client.CoreV1().LimitRanges(ns).Create(ctx, lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "compute", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourcePods: resource.MustParse("2"), corev1.ResourceRequestsCPU: resource.MustParse("1"),
		}},
	}
	if _, err := c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "quota status", func(ctx context.Context) (bool, error) {
		q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "compute", metav1.GetOptions{})
		return err == nil && len(q.Status.Hard) == 2 && len(q.Status.Used) == 2, err
	})
	mkPod := func(name, cpuLimit string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		}
		if cpuLimit != "" {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLimit)}
		}
		return p
	}
	// The LimitRange's max is enforced with upstream's message.
	_, err := c.Client.CoreV1().Pods(ns).Create(ctx, mkPod("big", "2"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "maximum cpu usage per Container is 1, but limit is 2") {
		t.Fatalf("big pod: got %v", err)
	}
	// Defaults fill in the limit (and, through the defaulted
	// defaultRequest, the request the quota needs).
	for _, name := range []string{"a", "b"} {
		p, err := c.Client.CoreV1().Pods(ns).Create(ctx, mkPod(name, ""), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		if got := p.Spec.Containers[0].Resources.Limits.Cpu().String(); got != "200m" {
			t.Errorf("pod %s cpu limit = %s, want the LimitRange default 200m", name, got)
		}
	}
	got, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "compute", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Used.Pods().String() != "2" || got.Status.Used.Name(corev1.ResourceRequestsCPU, resource.DecimalSI).String() != "400m" {
		t.Errorf("used = %v, want pods=2 requests.cpu=400m", got.Status.Used)
	}
	want := `pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2`
	_, err = c.Client.CoreV1().Pods(ns).Create(ctx, mkPod("c", ""), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("third pod: got %v, want %s", err, want)
	}
	manifest := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: c\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
	for v, bin := range framework.KubectlBinaries() {
		out, err := c.Kubectl(t, bin, manifest, "create", "-f", "-")
		if err == nil || !strings.Contains(out, "exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2") {
			t.Errorf("kubectl %s: got %v: %s", v, err, out)
		}
	}
	// Deleting a pod gives its usage back through the controller.
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	poll(t, "usage given back", func(ctx context.Context) (bool, error) {
		q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "compute", metav1.GetOptions{})
		return err == nil && q.Status.Used.Pods().String() == "1", err
	})
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, mkPod("c", ""), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating after usage was freed: %v", err)
	}
}
