package core

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

var (
	supportedAccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany, corev1.ReadWriteMany,
		corev1.ReadWriteOnce, corev1.ReadWriteOncePod}
	supportedReclaimPolicies = []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete,
		corev1.PersistentVolumeReclaimRecycle, corev1.PersistentVolumeReclaimRetain}
	supportedVolumeModes = []corev1.PersistentVolumeMode{corev1.PersistentVolumeBlock, corev1.PersistentVolumeFilesystem}
)

func persistentVolumeResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "persistentvolumes", Singular: "persistentvolume", Kind: "PersistentVolume", ListKind: "PersistentVolumeList",
		ShortNames: []string{"pv"},
		New:        func() runtime.Object { return &corev1.PersistentVolume{} },
		NewList:    func() runtime.Object { return &corev1.PersistentVolumeList{} },
		Default:    func(obj runtime.Object) { defaultPV(obj.(*corev1.PersistentVolume)) },
		PrepareForCreate: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			t := metav1.NewTime(now())
			pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending, LastPhaseTransitionTime: &t}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.PersistentVolume).Status = old.(*corev1.PersistentVolume).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			pv, oldPV := obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume)
			pv.Spec = oldPV.Spec
			if pv.Status.Phase != oldPV.Status.Phase {
				t := metav1.NewTime(now())
				pv.Status.LastPhaseTransitionTime = &t
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validatePV(obj.(*corev1.PersistentVolume)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			pv, oldPV := obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume)
			if !equality.Semantic.DeepEqual(pv.Spec.PersistentVolumeSource, oldPV.Spec.PersistentVolumeSource) {
				return field.ErrorList{field.Forbidden(field.NewPath("spec", "persistentvolumesource"), "spec.persistentvolumesource is immutable after creation\n"+
					diff.Diff(oldPV.Spec.PersistentVolumeSource, pv.Spec.PersistentVolumeSource))}
			}
			return nil
		},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Capacity", Type: "string", Description: corev1.PersistentVolumeSpec{}.SwaggerDoc()["capacity"]},
			{Name: "Access Modes", Type: "string", Description: corev1.PersistentVolumeSpec{}.SwaggerDoc()["accessModes"]},
			{Name: "Reclaim Policy", Type: "string", Description: corev1.PersistentVolumeSpec{}.SwaggerDoc()["persistentVolumeReclaimPolicy"]},
			{Name: "Status", Type: "string", Description: corev1.PersistentVolumeStatus{}.SwaggerDoc()["phase"]},
			{Name: "Claim", Type: "string", Description: corev1.PersistentVolumeSpec{}.SwaggerDoc()["claimRef"]},
			{Name: "StorageClass", Type: "string", Description: "StorageClass of the pv"},
			{Name: "VolumeAttributesClass", Type: "string", Description: "VolumeAttributesClass of the pv"},
			{Name: "Reason", Type: "string", Description: corev1.PersistentVolumeStatus{}.SwaggerDoc()["reason"]},
			ageColumn,
			{Name: "VolumeMode", Type: "string", Priority: 1, Description: corev1.PersistentVolumeSpec{}.SwaggerDoc()["volumeMode"]},
		},
		TableRow: func(obj runtime.Object) []interface{} { return pvRow(obj.(*corev1.PersistentVolume)) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"name": obj.(*corev1.PersistentVolume).Name}
		},
	}
}

func defaultPV(pv *corev1.PersistentVolume) {
	if pv.Status.Phase == "" {
		pv.Status.Phase = corev1.VolumePending
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == "" {
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	}
	if pv.Spec.VolumeMode == nil {
		m := corev1.PersistentVolumeFilesystem
		pv.Spec.VolumeMode = &m
	}
	if hp := pv.Spec.HostPath; hp != nil && hp.Type == nil {
		t := corev1.HostPathUnset
		hp.Type = &t
	}
	if pv.Spec.RBD != nil {
		if pv.Spec.RBD.RBDPool == "" {
			pv.Spec.RBD.RBDPool = "rbd"
		}
		if pv.Spec.RBD.RadosUser == "" {
			pv.Spec.RBD.RadosUser = "admin"
		}
		if pv.Spec.RBD.Keyring == "" {
			pv.Spec.RBD.Keyring = "/etc/ceph/keyring"
		}
	}
	if pv.Spec.ISCSI != nil && pv.Spec.ISCSI.ISCSIInterface == "" {
		pv.Spec.ISCSI.ISCSIInterface = "default"
	}
	if pv.Spec.AzureDisk != nil {
		defaultAzureDisk(pv.Spec.AzureDisk)
	}
}

func validateAccessModes(modes []corev1.PersistentVolumeAccessMode, fldPath *field.Path) field.ErrorList {
	if len(modes) == 0 {
		return field.ErrorList{field.Required(fldPath, "at least 1 access mode is required")}
	}
	var errs field.ErrorList
	for _, m := range modes {
		errs = append(errs, oneOf(m, supportedAccessModes, fldPath)...)
		if m == corev1.ReadWriteOncePod && len(modes) > 1 {
			errs = append(errs, field.Forbidden(fldPath, "may not use ReadWriteOncePod with other access modes"))
		}
	}
	return errs
}

func validatePV(pv *corev1.PersistentVolume) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	errs = append(errs, validateAccessModes(pv.Spec.AccessModes, specPath.Child("accessModes"))...)
	capPath := specPath.Child("capacity")
	if len(pv.Spec.Capacity) == 0 {
		errs = append(errs, field.Required(capPath, ""))
	} else if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok || len(pv.Spec.Capacity) > 1 {
		errs = append(errs, field.NotSupported(capPath, pv.Spec.Capacity, []string{string(corev1.ResourceStorage)}))
	}
	for _, name := range sortedResourceNames(pv.Spec.Capacity) {
		q := pv.Spec.Capacity[name]
		errs = append(errs, nonNegativeQuantity(q, capPath.Key(string(name)))...)
		if q.Sign() == 0 {
			errs = append(errs, field.Invalid(capPath.Key(string(name)), q.String(), isNotPositiveErrorMsg))
		}
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != "" {
		errs = append(errs, oneOf(pv.Spec.PersistentVolumeReclaimPolicy, supportedReclaimPolicies, specPath.Child("persistentVolumeReclaimPolicy"))...)
	}
	if pv.Spec.StorageClassName != "" {
		errs = append(errs, dns1123Subdomain(pv.Spec.StorageClassName, specPath.Child("storageClassName"))...)
	}
	if pv.Spec.VolumeMode != nil {
		errs = append(errs, oneOf(*pv.Spec.VolumeMode, supportedVolumeModes, specPath.Child("volumeMode"))...)
	}
	set := setPointerFields(&pv.Spec.PersistentVolumeSource)
	if len(set) == 0 {
		errs = append(errs, field.Required(specPath, "must specify a volume type"))
	}
	for _, extra := range set[min(1, len(set)):] {
		errs = append(errs, field.Forbidden(specPath.Child(extra), "may not specify more than 1 volume type"))
	}
	if hp := pv.Spec.HostPath; hp != nil && hp.Path == "" {
		errs = append(errs, field.Required(specPath.Child("hostPath", "path"), ""))
	}
	if l := pv.Spec.Local; l != nil {
		if l.Path == "" {
			errs = append(errs, field.Required(specPath.Child("local", "path"), ""))
		}
		if pv.Spec.NodeAffinity == nil {
			errs = append(errs, field.Required(specPath.Child("nodeAffinity"), "Local volume requires node affinity"))
		}
	}
	if c := pv.Spec.CSI; c != nil {
		if c.Driver == "" {
			errs = append(errs, field.Required(specPath.Child("csi", "driver"), ""))
		}
		if c.VolumeHandle == "" {
			errs = append(errs, field.Required(specPath.Child("csi", "volumeHandle"), ""))
		}
	}
	return errs
}

func accessModesString(modes []corev1.PersistentVolumeAccessMode) string {
	var out []string
	has := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range modes {
		has[m] = true
	}
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{{corev1.ReadWriteOnce, "RWO"}, {corev1.ReadOnlyMany, "ROX"}, {corev1.ReadWriteMany, "RWX"}, {corev1.ReadWriteOncePod, "RWOP"}} {
		if has[m.mode] {
			out = append(out, m.short)
		}
	}
	return strings.Join(out, ",")
}

func volumeModeString(m *corev1.PersistentVolumeMode) string {
	if m == nil {
		return "<unset>"
	}
	return string(*m)
}

func pvRow(pv *corev1.PersistentVolume) []interface{} {
	claim := ""
	if pv.Spec.ClaimRef != nil {
		claim = pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
	}
	capacity := ""
	if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok {
		capacity = q.String()
	}
	phase := string(pv.Status.Phase)
	if pv.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	vac := "<unset>"
	if pv.Spec.VolumeAttributesClassName != nil && *pv.Spec.VolumeAttributesClassName != "" {
		vac = *pv.Spec.VolumeAttributesClassName
	}
	return []interface{}{pv.Name, capacity, accessModesString(pv.Spec.AccessModes), string(pv.Spec.PersistentVolumeReclaimPolicy),
		phase, claim, pv.Spec.StorageClassName, vac, pv.Status.Reason, age(pv.CreationTimestamp), volumeModeString(pv.Spec.VolumeMode)}
}

func persistentVolumeClaimResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "persistentvolumeclaims", Singular: "persistentvolumeclaim", Kind: "PersistentVolumeClaim",
		ListKind: "PersistentVolumeClaimList", Namespaced: true, ShortNames: []string{"pvc"},
		New:     func() runtime.Object { return &corev1.PersistentVolumeClaim{} },
		NewList: func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		Default: func(obj runtime.Object) {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			if pvc.Status.Phase == "" {
				pvc.Status.Phase = corev1.ClaimPending
			}
			defaultPVCSpec(&pvc.Spec)
		},
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = old.(*corev1.PersistentVolumeClaim).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Spec = old.(*corev1.PersistentVolumeClaim).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePVCSpec(&obj.(*corev1.PersistentVolumeClaim).Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePVCUpdate(obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim))
		},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Status", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["phase"]},
			{Name: "Volume", Type: "string", Description: corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeName"]},
			{Name: "Capacity", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["capacity"]},
			{Name: "Access Modes", Type: "string", Description: corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["accessModes"]},
			{Name: "StorageClass", Type: "string", Description: "StorageClass of the pvc"},
			{Name: "VolumeAttributesClass", Type: "string", Description: "VolumeAttributesClass of the pvc"},
			ageColumn,
			{Name: "VolumeMode", Type: "string", Priority: 1, Description: corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeMode"]},
		},
		TableRow: func(obj runtime.Object) []interface{} { return pvcRow(obj.(*corev1.PersistentVolumeClaim)) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"name": obj.(*corev1.PersistentVolumeClaim).Name}
		},
	}
}

func validatePVCSpec(s *corev1.PersistentVolumeClaimSpec, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateAccessModes(s.AccessModes, specPath.Child("accessModes"))...)
	if s.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
	}
	storagePath := specPath.Child("resources").Key(string(corev1.ResourceStorage))
	q, ok := s.Resources.Requests[corev1.ResourceStorage]
	if !ok && s.DataSource == nil && s.DataSourceRef == nil {
		errs = append(errs, field.Required(storagePath, ""))
	} else if ok {
		errs = append(errs, nonNegativeQuantity(q, storagePath)...)
		if q.Sign() == 0 {
			errs = append(errs, field.Invalid(storagePath, q.String(), isNotPositiveErrorMsg))
		}
	}
	if s.StorageClassName != nil && *s.StorageClassName != "" {
		errs = append(errs, dns1123Subdomain(*s.StorageClassName, specPath.Child("storageClassName"))...)
	}
	if s.VolumeMode != nil {
		errs = append(errs, oneOf(*s.VolumeMode, supportedVolumeModes, specPath.Child("volumeMode"))...)
	}
	if s.DataSource != nil {
		dp := specPath.Child("dataSource")
		if s.DataSource.Name == "" {
			errs = append(errs, field.Required(dp.Child("name"), ""))
		}
		if s.DataSource.Kind == "" {
			errs = append(errs, field.Required(dp.Child("kind"), ""))
		}
	}
	return errs
}

func validatePVCUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	specPath := field.NewPath("spec")
	var errs field.ErrorList
	munged := pvc.Spec.DeepCopy()
	munged.Resources.Requests = old.Spec.Resources.Requests
	munged.VolumeAttributesClassName = old.Spec.VolumeAttributesClassName
	// Binding fills volumeName once.
	if old.Spec.VolumeName == "" {
		munged.VolumeName = old.Spec.VolumeName
	}
	bound := old.Status.Phase == corev1.ClaimBound
	if !equality.Semantic.DeepEqual(*munged, old.Spec) || (!bound && !equality.Semantic.DeepEqual(pvc.Spec.Resources.Requests, old.Spec.Resources.Requests)) {
		return field.ErrorList{field.Forbidden(specPath, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"+
			diff.Diff(old.Spec, pvc.Spec))}
	}
	if bound {
		newQ := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		oldQ := old.Spec.Resources.Requests[corev1.ResourceStorage]
		if newQ.Cmp(oldQ) < 0 {
			errs = append(errs, field.Forbidden(specPath.Child("resources", "requests", "storage"), "field can not be less than previous value"))
		}
	}
	return errs
}

func pvcRow(pvc *corev1.PersistentVolumeClaim) []interface{} {
	phase := string(pvc.Status.Phase)
	if pvc.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	capacity, modes := "", ""
	if pvc.Spec.VolumeName != "" {
		modes = accessModesString(pvc.Status.AccessModes)
		if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
			capacity = q.String()
		}
	}
	sc := ""
	if pvc.Spec.StorageClassName != nil {
		sc = *pvc.Spec.StorageClassName
	}
	vac := "<unset>"
	if pvc.Spec.VolumeAttributesClassName != nil && *pvc.Spec.VolumeAttributesClassName != "" {
		vac = *pvc.Spec.VolumeAttributesClassName
	}
	return []interface{}{pvc.Name, phase, pvc.Spec.VolumeName, capacity, modes, sc, vac, age(pvc.CreationTimestamp), volumeModeString(pvc.Spec.VolumeMode)}
}

// resourceListString renders "cpu: 1, memory: 1Gi" style quantities in
// name order (used by resource quotas).
func resourceListString(l corev1.ResourceList) string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, string(n))
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		q := l[corev1.ResourceName(n)]
		out[i] = fmt.Sprintf("%s: %s", n, q.String())
	}
	return strings.Join(out, ", ")
}
