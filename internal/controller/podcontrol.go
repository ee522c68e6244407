package controller

import (
	"context"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// Event reasons recorded by PodControl, as upstream.
const (
	SuccessfulCreatePodReason = "SuccessfulCreate"
	FailedCreatePodReason     = "FailedCreate"
	SuccessfulDeletePodReason = "SuccessfulDelete"
	FailedDeletePodReason     = "FailedDelete"
)

// PodControl creates, deletes and patches pods on behalf of a controller.
type PodControl interface {
	// CreatePod creates a pod from template in namespace, owned by owner
	// through ref (a controller reference).
	CreatePod(ctx context.Context, namespace string, template *v1.PodTemplateSpec, owner runtime.Object, ref *metav1.OwnerReference) error
	// DeletePod deletes the named pod; owner receives the event.
	DeletePod(ctx context.Context, namespace, name string, owner runtime.Object) error
	// PatchPod applies a strategic merge patch to the named pod.
	PatchPod(ctx context.Context, namespace, name string, patch []byte) error
}

// RealPodControl is the PodControl that talks to the API server.
type RealPodControl struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ PodControl = RealPodControl{}

// NewControllerRef returns the owner reference a controller puts on what it
// creates: controller=true and blockOwnerDeletion=true.
func NewControllerRef(owner metav1.Object, gvk schema.GroupVersionKind) *metav1.OwnerReference {
	t := true
	return &metav1.OwnerReference{
		APIVersion:         gvk.GroupVersion().String(),
		Kind:               gvk.Kind,
		Name:               owner.GetName(),
		UID:                owner.GetUID(),
		Controller:         &t,
		BlockOwnerDeletion: &t,
	}
}

// PodFromTemplate builds the pod a controller creates from template: labels,
// annotations, finalizers and spec copied, generateName "<owner>-".
func PodFromTemplate(template *v1.PodTemplateSpec, owner metav1.Object, ref *metav1.OwnerReference) *v1.Pod {
	return podSharingTemplate(template.DeepCopy(), owner, ref)
}

// podSharingTemplate is PodFromTemplate without the copy: the pod's maps,
// slices and spec are the template's, so it must not be modified (only
// encoded).
func podSharingTemplate(template *v1.PodTemplateSpec, owner metav1.Object, ref *metav1.OwnerReference) *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: owner.GetName() + "-",
			Namespace:    owner.GetNamespace(),
			Labels:       template.Labels,
			Annotations:  template.Annotations,
			Finalizers:   template.Finalizers,
		},
		Spec: template.Spec,
	}
	if ref != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	return pod
}

func (c RealPodControl) event(obj runtime.Object, typ, reason, format string, args ...any) {
	if c.Recorder != nil && obj != nil {
		c.Recorder.Eventf(obj, typ, reason, format, args...)
	}
}

// CreatePod implements PodControl.
func (c RealPodControl) CreatePod(ctx context.Context, namespace string, template *v1.PodTemplateSpec, owner runtime.Object, ref *metav1.OwnerReference) error {
	meta, err := creationOwner(template, owner)
	if err != nil {
		return err
	}
	var name string
	if rc := CoreREST(c.Client); rc != nil {
		// The pod is only encoded: it may share the template's
		// fields, which saves a deep copy of the spec per pod.
		name, err = createPod(ctx, rc, namespace, podSharingTemplate(template, meta, ref))
	} else {
		var created *v1.Pod
		created, err = c.Client.CoreV1().Pods(namespace).Create(ctx, PodFromTemplate(template, meta, ref), metav1.CreateOptions{})
		if err == nil {
			name = created.Name
		}
	}
	return c.created(owner, namespace, meta, name, err)
}

// creationOwner checks that a pod can be created from template for owner
// and returns the owner's metadata.
func creationOwner(template *v1.PodTemplateSpec, owner runtime.Object) (metav1.Object, error) {
	meta, ok := owner.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("creating pod: owner %T has no object metadata", owner)
	}
	if len(template.Labels) == 0 {
		return nil, fmt.Errorf("creating pod: template of %s has no labels", meta.GetName())
	}
	return meta, nil
}

// created records the outcome of creating pod name for owner.
func (c RealPodControl) created(owner runtime.Object, namespace string, meta metav1.Object, name string, err error) error {
	if err != nil {
		if !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			c.event(owner, v1.EventTypeWarning, FailedCreatePodReason, "Error creating: %v", err)
		}
		return fmt.Errorf("creating pod for %s/%s: %w", namespace, meta.GetName(), err)
	}
	c.event(owner, v1.EventTypeNormal, SuccessfulCreatePodReason, "Created pod: %v", name)
	return nil
}

// PodCreator returns a function that, at each call, does what
// pc.CreatePod(ctx, namespace, template, owner, ref) does, for a caller
// creating many pods from one template in a row (a ReplicaSet scaling
// up). The pods are all the same (the API server names them from
// generateName), so with a RealPodControl that talks HTTP the request
// body is encoded once rather than per pod. template must not change
// while the function is in use.
func PodCreator(pc PodControl, namespace string, template *v1.PodTemplateSpec, owner runtime.Object, ref *metav1.OwnerReference) func(context.Context) error {
	c, ok := pc.(RealPodControl)
	var rc *rest.RESTClient
	if ok {
		rc = CoreREST(c.Client)
	}
	if rc == nil {
		return func(ctx context.Context) error { return pc.CreatePod(ctx, namespace, template, owner, ref) }
	}
	body := sync.OnceValues(func() (*encodedPod, error) {
		meta, err := creationOwner(template, owner)
		if err != nil {
			return nil, err
		}
		enc := &encodedPod{meta: meta, body: encodePod(rc, namespace, podSharingTemplate(template, meta, ref))}
		if enc.body != nil {
			enc.direct = newDirectPost(rc, namespace, enc.body)
		}
		return enc, nil
	})
	return func(ctx context.Context) error {
		enc, err := body()
		if err != nil {
			return err
		}
		if enc.body == nil {
			// The REST client's encoding could not be captured:
			// encode per pod.
			return c.CreatePod(ctx, namespace, template, owner, ref)
		}
		var name string
		if enc.direct != nil {
			name, err = enc.direct.create(ctx)
		} else {
			name, err = createEncodedPod(ctx, rc, namespace, enc.body)
		}
		return c.created(owner, namespace, enc.meta, name, err)
	}
}

// encodedPod is the request body of a pod creation.
type encodedPod struct {
	meta metav1.Object
	body *requestBody
	// direct sends body without a rest.Request (nil: it could not be
	// made to send the same request).
	direct *directPost
}

// DeletePod implements PodControl.
func (c RealPodControl) DeletePod(ctx context.Context, namespace, name string, owner runtime.Object) error {
	if err := c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return err
		}
		c.event(owner, v1.EventTypeWarning, FailedDeletePodReason, "Error deleting: %v", err)
		return fmt.Errorf("deleting pod %s/%s: %w", namespace, name, err)
	}
	c.event(owner, v1.EventTypeNormal, SuccessfulDeletePodReason, "Deleted pod: %v", name)
	return nil
}

// PatchPod implements PodControl.
func (c RealPodControl) PatchPod(ctx context.Context, namespace, name string, patch []byte) error {
	if _, err := c.Client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patching pod %s/%s: %w", namespace, name, err)
	}
	return nil
}
