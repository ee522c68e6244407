package core

import (
	"encoding/json"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

const immutableFieldMsg = "field is immutable when `immutable` is set"

func configMapResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "configmaps", Singular: "configmap", Kind: "ConfigMap", ListKind: "ConfigMapList",
		Namespaced: true, ShortNames: []string{"cm"},
		New:      func() runtime.Object { return &corev1.ConfigMap{} },
		NewList:  func() runtime.Object { return &corev1.ConfigMapList{} },
		Validate: func(obj runtime.Object) field.ErrorList { return validateConfigMap(obj.(*corev1.ConfigMap)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cm, oldCM := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
			var errs field.ErrorList
			if oldCM.Immutable != nil && *oldCM.Immutable {
				if !reflect.DeepEqual(cm.Immutable, oldCM.Immutable) {
					errs = append(errs, field.Forbidden(field.NewPath("immutable"), immutableFieldMsg))
				}
				if !reflect.DeepEqual(cm.Data, oldCM.Data) {
					errs = append(errs, field.Forbidden(field.NewPath("data"), immutableFieldMsg))
				}
				if !reflect.DeepEqual(cm.BinaryData, oldCM.BinaryData) {
					errs = append(errs, field.Forbidden(field.NewPath("binaryData"), immutableFieldMsg))
				}
			}
			return errs
		},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Data", Type: "string", Description: "Number of data in the configmap"},
			ageColumn,
		},
		TableRow: func(obj runtime.Object) []interface{} {
			cm := obj.(*corev1.ConfigMap)
			return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp)}
		},
	}
}

func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for _, k := range sortedKeys(cm.Data) {
		errs = append(errs, invalidMsgs(field.NewPath("data").Key(k), k, validation.IsConfigMapKey(k))...)
		size += len(k) + len(cm.Data[k])
	}
	for _, k := range sortedKeys(cm.BinaryData) {
		errs = append(errs, invalidMsgs(field.NewPath("binaryData").Key(k), k, validation.IsConfigMapKey(k))...)
		if _, dup := cm.Data[k]; dup {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, "duplicate of key present in data"))
		}
		size += len(k) + len(cm.BinaryData[k])
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", corev1.MaxSecretSize))
	}
	return errs
}

func secretResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "secrets", Singular: "secret", Kind: "Secret", ListKind: "SecretList",
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Secret{} },
		NewList:    func() runtime.Object { return &corev1.SecretList{} },
		Default: func(obj runtime.Object) {
			s := obj.(*corev1.Secret)
			if s.Type == "" {
				s.Type = corev1.SecretTypeOpaque
			}
		},
		PrepareForCreate: func(obj runtime.Object) { foldStringData(obj.(*corev1.Secret)) },
		PrepareForUpdate: func(obj, old runtime.Object) { foldStringData(obj.(*corev1.Secret)) },
		Validate:         func(obj runtime.Object) field.ErrorList { return validateSecret(obj.(*corev1.Secret)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateSecretUpdate(obj.(*corev1.Secret), old.(*corev1.Secret))
		},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Type", Type: "string", Description: corev1.Secret{}.SwaggerDoc()["type"]},
			{Name: "Data", Type: "string", Description: corev1.Secret{}.SwaggerDoc()["data"]},
			ageColumn,
		},
		TableRow: func(obj runtime.Object) []interface{} {
			s := obj.(*corev1.Secret)
			return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp)}
		},
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
		},
	}
}

// foldStringData merges the write-only stringData into data, as upstream's
// conversion does; stringData is never stored.
func foldStringData(s *corev1.Secret) {
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

func validateSecret(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	dataPath := field.NewPath("data")
	size := 0
	for _, k := range sortedKeys(s.Data) {
		errs = append(errs, invalidMsgs(dataPath.Key(k), k, validation.IsConfigMapKey(k))...)
		size += len(s.Data[k])
	}
	for _, k := range sortedKeys(s.StringData) {
		errs = append(errs, invalidMsgs(field.NewPath("stringData").Key(k), k, validation.IsConfigMapKey(k))...)
		if _, ok := s.Data[k]; !ok {
			size += len(s.StringData[k])
		}
	}
	if size > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	has := func(k string) bool {
		if _, ok := s.Data[k]; ok {
			return true
		}
		_, ok := s.StringData[k]
		return ok
	}
	get := func(k string) []byte {
		if v, ok := s.StringData[k]; ok {
			return []byte(v)
		}
		return s.Data[k]
	}
	requireKey := func(k string) {
		if !has(k) {
			errs = append(errs, field.Required(dataPath.Key(k), ""))
		}
	}
	requireJSON := func(k string) {
		requireKey(k)
		if has(k) {
			var v map[string]interface{}
			if err := json.Unmarshal(get(k), &v); err != nil {
				errs = append(errs, field.Invalid(dataPath.Key(k), "<secret contents redacted>", err.Error()))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		requireJSON(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		requireJSON(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		if !has(corev1.BasicAuthUsernameKey) && !has(corev1.BasicAuthPasswordKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""))
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		requireKey(corev1.SSHAuthPrivateKey)
	case corev1.SecretTypeTLS:
		requireKey(corev1.TLSCertKey)
		requireKey(corev1.TLSPrivateKeyKey)
	case corev1.SecretTypeOpaque, "":
	default:
		errs = append(errs, invalidMsgs(field.NewPath("type"), s.Type, validation.IsQualifiedName(string(s.Type)))...)
	}
	return errs
}

func validateSecretUpdate(s, old *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, apivalidation.ValidateImmutableField(s.Type, old.Type, field.NewPath("type"))...)
	if old.Immutable != nil && *old.Immutable {
		if !reflect.DeepEqual(s.Immutable, old.Immutable) {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), immutableFieldMsg))
		}
		if !reflect.DeepEqual(s.Data, old.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), immutableFieldMsg))
		}
	}
	return errs
}
