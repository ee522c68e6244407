package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/test/integration/framework"
)

func cm(name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: map[string]string{"k": "v"}}
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "sem"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
}

func TestSemantics(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	const ns = "sem"
	createNamespace(t, c, ns)
	cms := c.Client.CoreV1().ConfigMaps(ns)
	pods := c.Client.CoreV1().Pods(ns)
	r := newRaw(t, c.Config)

	t.Run("generateName", func(t *testing.T) {
		got, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
		if !strings.HasPrefix(got.Name, "gen-") || len(got.Name) != len("gen-")+5 || got.GenerateName != "gen-" {
			t.Errorf("generated name %q (generateName %q)", got.Name, got.GenerateName)
		}
		if got.UID == "" || got.CreationTimestamp.IsZero() || got.ResourceVersion == "" {
			t.Errorf("server-set metadata missing: %+v", got.ObjectMeta)
		}
		again, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
		if err != nil || again.Name == got.Name {
			t.Errorf("second generateName create: %v, name %q", err, again.GetName())
		}
	})

	t.Run("dryRun writes nothing", func(t *testing.T) {
		dry := []string{metav1.DryRunAll}
		out, err := cms.Create(ctx, cm("dry", nil), metav1.CreateOptions{DryRun: dry})
		if err != nil || out.Name != "dry" {
			t.Fatalf("dry-run create: %v %v", err, out)
		}
		if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run create stored the object: %v", err)
		}
		real, err := cms.Create(ctx, cm("dry", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
		upd := real.DeepCopy()
		upd.Data["k"] = "changed"
		if out, err := cms.Update(ctx, upd, metav1.UpdateOptions{DryRun: dry}); err != nil || out.Data["k"] != "changed" {
			t.Errorf("dry-run update: %v %v", err, out)
		}
		if _, err := cms.Patch(ctx, "dry", "application/merge-patch+json", []byte(`{"data":{"k":"patched"}}`), metav1.PatchOptions{DryRun: dry}); err != nil {
			t.Errorf("dry-run patch: %v", err)
		}
		if err := cms.Delete(ctx, "dry", metav1.DeleteOptions{DryRun: dry}); err != nil {
			t.Errorf("dry-run delete: %v", err)
		}
		if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{DryRun: dry}, metav1.ListOptions{}); err != nil {
			t.Errorf("dry-run deletecollection: %v", err)
		}
		now, err := cms.Get(ctx, "dry", metav1.GetOptions{})
		if err != nil || now.ResourceVersion != real.ResourceVersion || now.Data["k"] != "v" {
			t.Errorf("dry-run writes changed the object: %v %+v", err, now)
		}
	})

	t.Run("deletecollection with label selector", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			if _, err := cms.Create(ctx, cm(fmt.Sprintf("dc-a-%d", i), map[string]string{"dc": "a"}), metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating: %v", err)
			}
		}
		for i := 0; i < 3; i++ {
			if _, err := cms.Create(ctx, cm(fmt.Sprintf("dc-b-%d", i), map[string]string{"dc": "b"}), metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating: %v", err)
			}
		}
		if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "dc=a"}); err != nil {
			t.Fatalf("deletecollection: %v", err)
		}
		l, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "dc"})
		if err != nil {
			t.Fatalf("listing: %v", err)
		}
		var names []string
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if strings.Join(names, ",") != "dc-b-0,dc-b-1,dc-b-2" {
			t.Errorf("after deletecollection dc=a: %v", names)
		}
	})

	t.Run("finalizers", func(t *testing.T) {
		o := cm("fin", nil)
		o.Finalizers = []string{"example.com/one", "example.com/two"}
		created, err := cms.Create(ctx, o, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
		if err := cms.Delete(ctx, "fin", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting: %v", err)
		}
		cur, err := cms.Get(ctx, "fin", metav1.GetOptions{})
		if err != nil || cur.DeletionTimestamp == nil || cur.UID != created.UID {
			t.Fatalf("a finalized object must stay, terminating: %v %+v", err, cur)
		}
		// No new finalizers while terminating; other changes are fine.
		add := cur.DeepCopy()
		add.Finalizers = append(add.Finalizers, "example.com/three")
		if _, err := cms.Update(ctx, add, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("adding a finalizer while terminating: %v, want Forbidden", err)
		}
		cur.Finalizers = []string{"example.com/two"}
		if cur, err = cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("removing one finalizer: %v", err)
		}
		cur.Finalizers = nil
		if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("removing the last finalizer: %v", err)
		}
		if _, err := cms.Get(ctx, "fin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("object with no finalizers left still exists: %v", err)
		}
	})

	t.Run("graceful pod deletion", func(t *testing.T) {
		if _, err := pods.Create(ctx, pod("bound", "node-1"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating: %v", err)
		}
		if _, err := pods.Create(ctx, pod("unbound", ""), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating: %v", err)
		}
		if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting: %v", err)
		}
		p, err := pods.Get(ctx, "bound", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("a pod on a node must stay until the kubelet confirms: %v", err)
		}
		if p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
			t.Errorf("graceful delete: deletionTimestamp=%v grace=%v", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
		}
		// A shorter grace period shortens it; a longer one does not.
		if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](10)}); err != nil {
			t.Fatalf("deleting again: %v", err)
		}
		p, _ = pods.Get(ctx, "bound", metav1.GetOptions{})
		if p == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 10 {
			t.Errorf("shortened grace = %v", p.DeletionGracePeriodSeconds)
		}
		if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatalf("force deleting: %v", err)
		}
		if _, err := pods.Get(ctx, "bound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after gracePeriodSeconds=0: %v", err)
		}
		if err := pods.Delete(ctx, "unbound", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting: %v", err)
		}
		if _, err := pods.Get(ctx, "unbound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("an unscheduled pod is deleted at once: %v", err)
		}
	})

	t.Run("generation", func(t *testing.T) {
		deps := c.Client.AppsV1().Deployments(ns)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "gen"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
				},
			},
		}
		d, err := deps.Create(ctx, d, metav1.CreateOptions{})
		if err != nil || d.Generation != 1 {
			t.Fatalf("create: %v generation %d", err, d.Generation)
		}
		d.Labels = map[string]string{"x": "y"}
		d.Annotations = map[string]string{"note": "z"}
		if d, err = deps.Update(ctx, d, metav1.UpdateOptions{}); err != nil || d.Generation != 1 {
			t.Fatalf("metadata update: %v generation %d, want 1", err, d.Generation)
		}
		d.Status.ObservedGeneration = 1
		d.Status.Replicas = 1
		if d, err = deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil || d.Generation != 1 {
			t.Fatalf("status update: %v generation %d, want 1", err, d.Generation)
		}
		d.Spec.Replicas = ptr.To[int32](2)
		if d, err = deps.Update(ctx, d, metav1.UpdateOptions{}); err != nil || d.Generation != 2 {
			t.Fatalf("spec update: %v generation %d, want 2", err, d.Generation)
		}
		if d.Status.Replicas != 1 {
			t.Errorf("spec update dropped status: %+v", d.Status)
		}
		if d, err = deps.Patch(ctx, "gen", "application/merge-patch+json", []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil || d.Generation != 3 {
			t.Fatalf("spec patch: %v generation %d, want 3", err, d.Generation)
		}
		// A no-op update writes nothing.
		same, err := deps.Update(ctx, d, metav1.UpdateOptions{})
		if err != nil || same.ResourceVersion != d.ResourceVersion || same.Generation != 3 {
			t.Errorf("no-op update: %v rv %s->%s generation %d", err, d.ResourceVersion, same.ResourceVersion, same.Generation)
		}
	})

	t.Run("pagination", func(t *testing.T) {
		const pns = "page"
		createNamespace(t, c, pns)
		pcms := c.Client.CoreV1().ConfigMaps(pns)
		want := map[string]bool{}
		for i := 0; i < 250; i++ {
			name := fmt.Sprintf("p-%03d", i)
			want[name] = true
			if _, err := pcms.Create(ctx, cm(name, nil), metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating: %v", err)
			}
		}
		var got []string
		var sizes []int
		opts := metav1.ListOptions{Limit: 100}
		var firstRV string
		for page := 0; ; page++ {
			l, err := pcms.List(ctx, opts)
			if err != nil {
				t.Fatalf("listing page %d: %v", page, err)
			}
			if page == 0 {
				firstRV = l.ResourceVersion
				if l.RemainingItemCount == nil || *l.RemainingItemCount != 150 {
					t.Errorf("first page remainingItemCount = %v, want 150", l.RemainingItemCount)
				}
			} else if l.ResourceVersion != firstRV {
				t.Errorf("page %d at resourceVersion %s, want the first page's %s", page, l.ResourceVersion, firstRV)
			}
			sizes = append(sizes, len(l.Items))
			for _, it := range l.Items {
				got = append(got, it.Name)
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
			if page == 0 {
				// A write between pages must not show up in later pages.
				if _, err := pcms.Create(ctx, cm("p-999", nil), metav1.CreateOptions{}); err != nil {
					t.Fatalf("creating: %v", err)
				}
			}
			if page > 5 {
				t.Fatalf("too many pages")
			}
		}
		if fmt.Sprint(sizes) != "[100 100 50]" {
			t.Errorf("page sizes %v, want [100 100 50]", sizes)
		}
		if !sort.StringsAreSorted(got) || len(got) != 250 {
			t.Errorf("paged names not sorted or wrong count: %d", len(got))
		}
		for _, n := range got {
			if !want[n] {
				t.Errorf("unexpected item %s", n)
			}
			delete(want, n)
		}
		if len(want) != 0 {
			t.Errorf("missing items: %v", want)
		}
		if _, err := pcms.List(ctx, metav1.ListOptions{Limit: 10, Continue: "garbage"}); !apierrors.IsBadRequest(err) {
			t.Errorf("garbage continue token: %v, want BadRequest", err)
		}
	})

	t.Run("pod field selectors", func(t *testing.T) {
		for _, p := range []*corev1.Pod{pod("fs-a", "node-a"), pod("fs-b", "node-b"), pod("fs-c", "node-a")} {
			if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating: %v", err)
			}
		}
		p, _ := pods.Get(ctx, "fs-c", metav1.GetOptions{})
		p.Status.Phase = corev1.PodRunning
		if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating status: %v", err)
		}
		for sel, want := range map[string]string{
			"spec.nodeName=node-a":                      "fs-a,fs-c",
			"spec.nodeName=node-b":                      "fs-b",
			"spec.nodeName!=node-a,metadata.name!=fs-x": "fs-b",
			"status.phase=Running":                      "fs-c",
			"status.phase=Pending,spec.nodeName=node-a": "fs-a",
			"metadata.name=fs-b":                        "fs-b",
			"status.phase=Failed":                       "",
		} {
			l, err := pods.List(ctx, metav1.ListOptions{FieldSelector: sel, LabelSelector: "app=sem"})
			if err != nil {
				t.Errorf("listing %s: %v", sel, err)
				continue
			}
			var names []string
			for _, it := range l.Items {
				if strings.HasPrefix(it.Name, "fs-") {
					names = append(names, it.Name)
				}
			}
			if strings.Join(names, ",") != want {
				t.Errorf("fieldSelector %s = %v, want %s", sel, names, want)
			}
		}
		if _, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.image=x"}); !apierrors.IsBadRequest(err) {
			t.Errorf("unsupported field selector: %v, want BadRequest", err)
		}
	})

	t.Run("resourceVersionMatch Exact", func(t *testing.T) {
		o, err := cms.Create(ctx, cm("exact", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
		rv1 := o.ResourceVersion
		o.Data["k"] = "v2"
		if _, err := cms.Update(ctx, o, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating: %v", err)
		}
		l, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: rv1, ResourceVersionMatch: metav1.ResourceVersionMatchExact, FieldSelector: "metadata.name=exact"})
		if err != nil {
			t.Fatalf("exact list: %v", err)
		}
		if l.ResourceVersion != rv1 || len(l.Items) != 1 || l.Items[0].Data["k"] != "v" {
			t.Errorf("exact list at %s: rv %s items %+v", rv1, l.ResourceVersion, l.Items)
		}
		l, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: rv1, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, FieldSelector: "metadata.name=exact"})
		if err != nil || len(l.Items) != 1 || l.Items[0].Data["k"] != "v2" {
			t.Errorf("not-older-than list: %v %+v", err, l)
		}
	})

	// Raw content negotiation.
	for _, name := range []string{"t1", "t2"} {
		if _, err := pods.Create(ctx, pod(name, ""), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating: %v", err)
		}
	}
	t.Run("table", func(t *testing.T) {
		resp := r.do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods?labelSelector=app%3Dsem&fieldSelector=spec.nodeName%3D", map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, nil)
		var tbl metav1.Table
		if err := json.Unmarshal(resp.body, &tbl); err != nil || resp.code != 200 || tbl.Kind != "Table" {
			t.Fatalf("table: %d %v %s", resp.code, err, resp.body)
		}
		var cols []string
		for _, cd := range tbl.ColumnDefinitions {
			if cd.Priority == 0 {
				cols = append(cols, cd.Name)
			}
		}
		if strings.Join(cols, ",") != "Name,Ready,Status,Restarts,Age" {
			t.Errorf("pod table columns %v", cols)
		}
		if len(tbl.Rows) != 2 || tbl.Rows[0].Cells[0] != "t1" || tbl.Rows[0].Cells[1] != "0/1" || tbl.Rows[0].Cells[2] != "Pending" {
			t.Errorf("pod table rows %+v", tbl.Rows)
		}
		var pm metav1.PartialObjectMetadata
		if err := json.Unmarshal(tbl.Rows[0].Object.Raw, &pm); err != nil || pm.Kind != "PartialObjectMetadata" || pm.Name != "t1" {
			t.Errorf("row object: %v %s", err, tbl.Rows[0].Object.Raw)
		}
		// Single object, and no acceptable form: 406.
		resp = r.do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/t1", map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, nil)
		if err := json.Unmarshal(resp.body, &tbl); err != nil || len(tbl.Rows) != 1 {
			t.Errorf("single-object table: %v %s", err, resp.body)
		}
		resp = r.do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/t1", map[string]string{"Accept": "application/json;as=Table;v=v9;g=meta.k8s.io"}, nil)
		if resp.code != http.StatusNotAcceptable {
			t.Errorf("unknown Table version: %d, want 406", resp.code)
		}
	})

	t.Run("partial object metadata", func(t *testing.T) {
		resp := r.do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods?labelSelector=app%3Dsem", map[string]string{"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}, nil)
		var pl metav1.PartialObjectMetadataList
		if err := json.Unmarshal(resp.body, &pl); err != nil || pl.Kind != "PartialObjectMetadataList" || pl.APIVersion != "meta.k8s.io/v1" || len(pl.Items) == 0 {
			t.Fatalf("partial list: %d %v %.500s", resp.code, err, resp.body)
		}
		if strings.Contains(string(resp.body), `"spec"`) {
			t.Errorf("partial list carries spec")
		}
		mc, err := metadata.NewForConfig(c.Config)
		if err != nil {
			t.Fatalf("metadata client: %v", err)
		}
		m, err := mc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(ns).Get(ctx, "t1", metav1.GetOptions{})
		if err != nil || m.Name != "t1" || m.UID == "" {
			t.Errorf("metadata get: %v %+v", err, m)
		}
	})

	t.Run("aggregated discovery", func(t *testing.T) {
		for _, path := range []string{"/api", "/apis"} {
			resp := r.do(t, http.MethodGet, path, map[string]string{"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"}, nil)
			var list struct {
				Kind, APIVersion string
				Items            []struct {
					Metadata metav1.ObjectMeta
					Versions []struct {
						Version   string
						Resources []struct {
							Resource string
							Scope    string
							Verbs    []string
						}
					}
				}
			}
			if err := json.Unmarshal(resp.body, &list); err != nil || list.Kind != "APIGroupDiscoveryList" || list.APIVersion != "apidiscovery.k8s.io/v2" {
				t.Fatalf("%s: %d %v %.300s", path, resp.code, err, resp.body)
			}
			if ct := resp.header.Get("Content-Type"); !strings.Contains(ct, "as=APIGroupDiscoveryList") {
				t.Errorf("%s Content-Type %q", path, ct)
			}
			want := map[string]string{"/api": "pods", "/apis": "deployments"}[path]
			found := false
			for _, g := range list.Items {
				for _, v := range g.Versions {
					for _, res := range v.Resources {
						if res.Resource == want && res.Scope == "Namespaced" && len(res.Verbs) > 0 {
							found = true
						}
					}
				}
			}
			if !found {
				t.Errorf("%s aggregated discovery lacks %s", path, want)
			}
		}
	})

	t.Run("protobuf", func(t *testing.T) {
		cfg := rest.CopyConfig(c.Config)
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
		pc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatalf("protobuf client: %v", err)
		}
		created, err := pc.CoreV1().Pods(ns).Create(ctx, pod("pb", "node-pb"), metav1.CreateOptions{})
		if err != nil || created.Spec.NodeName != "node-pb" {
			t.Fatalf("protobuf create: %v", err)
		}
		p, err := pc.CoreV1().Pods(ns).Get(ctx, "pb", metav1.GetOptions{})
		if err != nil || p.Spec.Containers[0].Image != "nginx" || p.UID != created.UID {
			t.Fatalf("protobuf get: %v %+v", err, p)
		}
		l, err := pc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-pb"})
		if err != nil || len(l.Items) != 1 {
			t.Fatalf("protobuf list: %v %+v", err, l)
		}
		if _, err := pc.CoreV1().Pods(ns).Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("protobuf 404: %v", err)
		}
		resp := r.do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/pb", map[string]string{"Accept": "application/vnd.kubernetes.protobuf"}, nil)
		if ct := resp.header.Get("Content-Type"); ct != "application/vnd.kubernetes.protobuf" || !strings.HasPrefix(string(resp.body), "k8s\x00") {
			t.Errorf("protobuf response: %q %q", ct, resp.body[:min(8, len(resp.body))])
		}
	})

	t.Run("anonymous", func(t *testing.T) {
		anon := newRaw(t, rest.AnonymousClientConfig(c.Config))
		for _, p := range []string{"/healthz", "/readyz", "/livez", "/readyz?verbose"} {
			if resp := anon.do(t, http.MethodGet, p, nil, nil); resp.code != 200 || !strings.Contains(string(resp.body), "ok") {
				t.Errorf("anonymous %s: %d %s", p, resp.code, resp.body)
			}
		}
		resp := anon.do(t, http.MethodGet, "/version", nil, nil)
		var v map[string]string
		if err := json.Unmarshal(resp.body, &v); err != nil || resp.code != 200 || v["gitVersion"] == "" || v["major"] == "" {
			t.Errorf("anonymous /version: %d %v %s", resp.code, err, resp.body)
		}
		for _, p := range []string{"/api", "/apis", "/api/v1/namespaces/" + ns + "/pods", "/metrics", "/openapi/v2"} {
			resp := anon.do(t, http.MethodGet, p, nil, nil)
			if resp.code != http.StatusUnauthorized {
				t.Errorf("anonymous %s: %d, want 401", p, resp.code)
				continue
			}
			if st := resp.status(t); st.Reason != metav1.StatusReasonUnauthorized {
				t.Errorf("anonymous %s: reason %q", p, st.Reason)
			}
		}
		bad := rest.AnonymousClientConfig(c.Config)
		bad.BearerToken = "not-a-token"
		if resp := newRaw(t, bad).do(t, http.MethodGet, "/api", nil, nil); resp.code != http.StatusUnauthorized {
			t.Errorf("bad bearer token: %d, want 401", resp.code)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp := r.do(t, http.MethodGet, "/metrics", nil, nil)
		body := string(resp.body)
		if resp.code != 200 {
			t.Fatalf("/metrics: %d", resp.code)
		}
		found := false
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "apiserver_request_total{") && strings.Contains(l, `resource="configmaps"`) && strings.Contains(l, `verb="POST"`) && strings.Contains(l, `code="201"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no apiserver_request_total for configmap creates:\n%s", grepLines(body, "apiserver_request_total"))
		}
		mustContain(t, "/metrics", body, "apiserver_request_duration_seconds_bucket")
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
