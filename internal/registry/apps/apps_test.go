package apps

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func resource(t *testing.T, name string) *registry.Resource {
	t.Helper()
	for _, r := range Resources() {
		if r.Resource == name {
			return r
		}
	}
	t.Fatalf("no resource %q", name)
	return nil
}

func template() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers:    []corev1.Container{{Name: "c", Image: "nginx"}},
		},
	}
}

func selector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
}

func meta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: "web", Namespace: "default"}
}

// wantErrs asserts errs holds exactly one error per expected "type path" pair.
func wantErrs(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, e := range errs {
		got[string(e.Type)+" "+e.Field] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing error %q in %v", w, errs)
		}
	}
	if len(want) == 0 && len(errs) != 0 {
		t.Errorf("unexpected errors: %v", errs)
	}
}

func pct(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
func num(i int32) *intstr.IntOrString  { v := intstr.FromInt32(i); return &v }

func TestDeploymentDefaults(t *testing.T) {
	r := resource(t, "deployments")
	d := &appsv1.Deployment{ObjectMeta: meta(), Spec: appsv1.DeploymentSpec{Selector: selector(), Template: template()}}
	r.Default(d)
	s := d.Spec
	if *s.Replicas != 1 || s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		s.Strategy.RollingUpdate.MaxSurge.String() != "25%" || s.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" ||
		*s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("bad defaults: %+v", s)
	}
	// Recreate gets no rollingUpdate block; explicit values survive.
	d2 := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(0), Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
	r.Default(d2)
	if d2.Spec.Strategy.RollingUpdate != nil || *d2.Spec.Replicas != 0 {
		t.Errorf("recreate defaults wrong: %+v", d2.Spec)
	}
	if errs := r.Validate(d); len(errs) != 0 {
		t.Errorf("defaulted deployment invalid: %v", errs)
	}
}

func TestDeploymentValidation(t *testing.T) {
	r := resource(t, "deployments")
	cases := []struct {
		name   string
		mutate func(*appsv1.Deployment)
		want   []string
	}{
		{"valid", func(*appsv1.Deployment) {}, nil},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = int32Ptr(-1) }, []string{"FieldValueInvalid spec.replicas"}},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, []string{"FieldValueRequired spec.selector"}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, []string{"FieldValueInvalid spec.selector"}},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels["app"] = "other" },
			[]string{"FieldValueInvalid spec.template.metadata.labels"}},
		{"restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]string{"FieldValueNotSupported spec.template.spec.restartPolicy"}},
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: num(0), MaxUnavailable: pct("0%")}
		}, []string{"FieldValueInvalid spec.strategy.rollingUpdate.maxUnavailable"}},
		{"bad percent", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxSurge = pct("abc") },
			[]string{"FieldValueInvalid spec.strategy.rollingUpdate.maxSurge"}},
		{"over 100%", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxUnavailable = pct("150%") },
			[]string{"FieldValueInvalid spec.strategy.rollingUpdate.maxUnavailable"}},
		{"recreate with rollingUpdate", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType },
			[]string{"FieldValueForbidden spec.strategy.rollingUpdate"}},
		{"unknown strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "Fast" },
			[]string{"FieldValueNotSupported spec.strategy.type"}},
		{"deadline below minReady", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 600 },
			[]string{"FieldValueInvalid spec.progressDeadlineSeconds"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: meta(), Spec: appsv1.DeploymentSpec{Selector: selector(), Template: template()}}
			r.Default(d)
			c.mutate(d)
			wantErrs(t, r.Validate(d), c.want...)
		})
	}
}

func TestSelectorImmutable(t *testing.T) {
	for _, res := range []string{"deployments", "replicasets", "daemonsets", "statefulsets"} {
		r := resource(t, res)
		oldObj, newObj := r.New(), r.New()
		setSel := func(o runtime.Object, v string) {
			sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
			switch x := o.(type) {
			case *appsv1.Deployment:
				x.Spec.Selector = sel
			case *appsv1.ReplicaSet:
				x.Spec.Selector = sel
			case *appsv1.DaemonSet:
				x.Spec.Selector = sel
			case *appsv1.StatefulSet:
				x.Spec.Selector = sel
			}
		}
		setSel(oldObj, "a")
		setSel(newObj, "a")
		if errs := r.ValidateUpdate(newObj, oldObj); len(errs) != 0 {
			t.Errorf("%s: unchanged selector rejected: %v", res, errs)
		}
		setSel(newObj, "b")
		errs := r.ValidateUpdate(newObj, oldObj)
		want := "FieldValueInvalid spec.selector"
		if res == "statefulsets" {
			want = "FieldValueForbidden spec"
		}
		wantErrs(t, errs, want)
	}
}

func TestStatefulSet(t *testing.T) {
	r := resource(t, "statefulsets")
	s := &appsv1.StatefulSet{ObjectMeta: meta(), Spec: appsv1.StatefulSetSpec{Selector: selector(), Template: template(), ServiceName: "web"}}
	r.Default(s)
	if s.Spec.PodManagementPolicy != appsv1.OrderedReadyPodManagement || s.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType ||
		*s.Spec.UpdateStrategy.RollingUpdate.Partition != 0 || *s.Spec.Replicas != 1 || *s.Spec.RevisionHistoryLimit != 10 ||
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Fatalf("bad defaults: %+v", s.Spec)
	}
	wantErrs(t, r.Validate(s))

	cases := []struct {
		name   string
		mutate func(*appsv1.StatefulSet)
		want   string
	}{
		{"bad policy", func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Random" }, "FieldValueInvalid spec.podManagementPolicy"},
		{"ondelete with rollingUpdate", func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType },
			"FieldValueInvalid spec.updateStrategy.rollingUpdate"},
		{"negative partition", func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = int32Ptr(-1) },
			"FieldValueInvalid spec.updateStrategy.rollingUpdate.partition"},
		{"bad retention", func(s *appsv1.StatefulSet) { s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Keep" },
			"FieldValueNotSupported spec.persistentVolumeClaimRetentionPolicy.whenScaled"},
		{"empty selector", func(s *appsv1.StatefulSet) { s.Spec.Selector = &metav1.LabelSelector{} }, "FieldValueInvalid spec.selector"},
		{"activeDeadline", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.ActiveDeadlineSeconds = new(int64) },
			"FieldValueForbidden spec.template.spec.activeDeadlineSeconds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s2 := s.DeepCopy()
			c.mutate(s2)
			wantErrs(t, r.Validate(s2), c.want)
		})
	}

	// A container may mount a volumeClaimTemplate's claim by name (the
	// controller adds the volume to each pod); an unknown name is still
	// refused.
	withClaim := s.DeepCopy()
	withClaim.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "www"}}}
	withClaim.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}}
	wantErrs(t, r.Validate(withClaim))
	withClaim.Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "nope"
	wantErrs(t, r.Validate(withClaim), "FieldValueNotFound spec.template.spec.containers[0].volumeMounts[0].name")
	if len(withClaim.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("validation added volumes to the stored template: %v", withClaim.Spec.Template.Spec.Volumes)
	}

	// Updates: allowed fields pass, others are forbidden with upstream's message.
	upd := s.DeepCopy()
	upd.Spec.Replicas = int32Ptr(3)
	upd.Spec.MinReadySeconds = 5
	upd.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	wantErrs(t, r.ValidateUpdate(upd, s))
	upd.Spec.ServiceName = "other"
	errs := r.ValidateUpdate(upd, s)
	wantErrs(t, errs, "FieldValueForbidden spec")
	if len(errs) == 1 && errs[0].Detail != statefulSetUpdateForbidden {
		t.Errorf("detail = %q", errs[0].Detail)
	}
}

func TestDaemonSet(t *testing.T) {
	r := resource(t, "daemonsets")
	d := &appsv1.DaemonSet{ObjectMeta: meta(), Spec: appsv1.DaemonSetSpec{Selector: selector(), Template: template()}}
	r.Default(d)
	ru := d.Spec.UpdateStrategy.RollingUpdate
	if d.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru.MaxUnavailable.String() != "1" ||
		ru.MaxSurge.String() != "0" || *d.Spec.RevisionHistoryLimit != 10 {
		t.Fatalf("bad defaults: %+v", d.Spec)
	}
	wantErrs(t, r.Validate(d))
	d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = num(0)
	wantErrs(t, r.Validate(d), "FieldValueInvalid spec.updateStrategy.rollingUpdate.maxUnavailable")
	d.Spec.UpdateStrategy.Type = "Sometimes"
	wantErrs(t, r.Validate(d), "FieldValueNotSupported spec.updateStrategy.type")
}

func TestReplicaSetAndControllerRevision(t *testing.T) {
	r := resource(t, "replicasets")
	rs := &appsv1.ReplicaSet{ObjectMeta: meta(), Spec: appsv1.ReplicaSetSpec{Selector: selector(), Template: template()}}
	r.Default(rs)
	if *rs.Spec.Replicas != 1 {
		t.Errorf("replicas not defaulted")
	}
	wantErrs(t, r.Validate(rs))
	rs.Spec.Replicas = int32Ptr(-2)
	wantErrs(t, r.Validate(rs), "FieldValueInvalid spec.replicas")
	rs.Status.Replicas = 4
	if got := r.SelectableFields(rs)["status.replicas"]; got != "4" {
		t.Errorf("status.replicas field = %q", got)
	}

	cr := resource(t, "controllerrevisions")
	rev := &appsv1.ControllerRevision{ObjectMeta: meta(), Revision: 2}
	wantErrs(t, cr.Validate(rev), "FieldValueRequired data")
	rev.Data.Raw = []byte(`{"a":1}`)
	wantErrs(t, cr.Validate(rev))
	changed := rev.DeepCopy()
	changed.Data.Raw = []byte(`{"a":2}`)
	wantErrs(t, cr.ValidateUpdate(changed, rev), "FieldValueInvalid data")
}

func TestStatusStrategy(t *testing.T) {
	r := resource(t, "deployments")
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(3)}, Status: appsv1.DeploymentStatus{Replicas: 7}}
	r.PrepareForCreate(d)
	if d.Status.Replicas != 0 {
		t.Errorf("status not reset on create")
	}
	old := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(1)}, Status: appsv1.DeploymentStatus{Replicas: 1}}
	upd := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(5)}, Status: appsv1.DeploymentStatus{Replicas: 9}}
	r.PrepareForUpdate(upd, old)
	if upd.Status.Replicas != 1 || *upd.Spec.Replicas != 5 {
		t.Errorf("main update: %+v", upd)
	}
	st := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(5)}, Status: appsv1.DeploymentStatus{Replicas: 9}}
	r.PrepareForStatusUpdate(st, old)
	if st.Status.Replicas != 9 || *st.Spec.Replicas != 1 {
		t.Errorf("status update: %+v", st)
	}
	wantErrs(t, r.ValidateStatusUpdate(&appsv1.Deployment{Status: appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 2}}, old),
		"FieldValueInvalid status.readyReplicas")
}

func TestScale(t *testing.T) {
	for _, res := range []string{"deployments", "replicasets", "statefulsets"} {
		r := resource(t, res)
		if r.Scale == nil {
			t.Fatalf("%s has no scale", res)
		}
		obj := r.New()
		r.Scale.SetReplicas(obj, 4)
		switch x := obj.(type) {
		case *appsv1.Deployment:
			x.Spec.Selector, x.Status.Replicas = selector(), 2
		case *appsv1.ReplicaSet:
			x.Spec.Selector, x.Status.Replicas = selector(), 2
		case *appsv1.StatefulSet:
			x.Spec.Selector, x.Status.Replicas = selector(), 2
		}
		spec, status, sel := r.Scale.Get(obj)
		if spec != 4 || status != 2 || sel != "app=web" {
			t.Errorf("%s: scale = %d %d %q", res, spec, status, sel)
		}
	}
	if resource(t, "daemonsets").Scale != nil {
		t.Errorf("daemonsets must not have scale")
	}
}

func TestTables(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-5 * time.Hour))
	m := metav1.ObjectMeta{Name: "web", CreationTimestamp: created}
	tmpl := template()
	tmpl.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	tr := true
	cases := []struct {
		res  string
		obj  runtime.Object
		want []interface{}
	}{
		{"deployments", &appsv1.Deployment{ObjectMeta: m, Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(3), Selector: selector(), Template: tmpl},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 1}},
			[]interface{}{"web", "2/3", int64(3), int64(1), "5h", "c", "nginx", "app=web"}},
		{"replicasets", &appsv1.ReplicaSet{ObjectMeta: m, Spec: appsv1.ReplicaSetSpec{Replicas: int32Ptr(3), Selector: selector(), Template: tmpl},
			Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 1}},
			[]interface{}{"web", int64(3), int64(3), int64(1), "5h", "c", "nginx", "app=web"}},
		{"statefulsets", &appsv1.StatefulSet{ObjectMeta: m, Spec: appsv1.StatefulSetSpec{Replicas: int32Ptr(2), Template: tmpl},
			Status: appsv1.StatefulSetStatus{ReadyReplicas: 2}},
			[]interface{}{"web", "2/2", "5h", "c", "nginx"}},
		{"daemonsets", &appsv1.DaemonSet{ObjectMeta: m, Spec: appsv1.DaemonSetSpec{Selector: selector(), Template: tmpl},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 1, NumberAvailable: 2}},
			[]interface{}{"web", int64(3), int64(3), int64(2), int64(1), int64(2), "disk=ssd", "5h", "c", "nginx", "app=web"}},
		{"controllerrevisions", &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-1", CreationTimestamp: created,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", Controller: &tr}}}, Revision: 1},
			[]interface{}{"web-1", "statefulset.apps/web", int64(1), "5h"}},
	}
	for _, c := range cases {
		r := resource(t, c.res)
		row := r.TableRow(c.obj)
		if len(row) != len(r.TableColumns) {
			t.Errorf("%s: %d cells for %d columns", c.res, len(row), len(r.TableColumns))
		}
		if len(row) != len(c.want) {
			t.Errorf("%s: row %v, want %v", c.res, row, c.want)
			continue
		}
		for i := range row {
			if row[i] != c.want[i] {
				t.Errorf("%s: cell %d (%s) = %#v, want %#v", c.res, i, r.TableColumns[i].Name, row[i], c.want[i])
			}
		}
	}
}

func TestDescriptors(t *testing.T) {
	for _, r := range Resources() {
		if r.New == nil || r.NewList == nil || r.Kind == "" || r.TableRow == nil || len(r.TableColumns) == 0 || !r.Namespaced {
			t.Errorf("%s: incomplete descriptor", r.Resource)
		}
		if gvk := r.GroupVersionKind(); gvk.Group != "apps" || gvk.Version != "v1" {
			t.Errorf("%s: gvk %v", r.Resource, gvk)
		}
	}
}
