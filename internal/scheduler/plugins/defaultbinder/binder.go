// Package defaultbinder is the DefaultBinder: it writes the placement
// through the pods/binding subresource.
package defaultbinder

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "DefaultBinder"

// DefaultBinder is the plugin.
type DefaultBinder struct{ h framework.Handle }

var _ framework.BindPlugin = (*DefaultBinder)(nil)

// New builds the plugin.
func New(h framework.Handle) (framework.Plugin, error) { return &DefaultBinder{h: h}, nil }

func (*DefaultBinder) Name() string { return Name }

// Bind posts a Binding for the pod.
func (b *DefaultBinder) Bind(ctx context.Context, _ *framework.CycleState, pod *v1.Pod, node string) *framework.Status {
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := post(ctx, b.h, binding); err != nil {
		return framework.AsStatus(fmt.Errorf("binding pod %s/%s to %s: %w", pod.Namespace, pod.Name, node, err))
	}
	return nil
}

// post sends the same request as the typed client's Pods(ns).Bind with
// empty CreateOptions, without its VersionedParams step: converting the
// (empty) options to query parameters through the scheme's parameter
// codec cost a quarter of every bind's client CPU, for no parameter at
// all. Clients without a REST client (fakes) get the typed call.
func post(ctx context.Context, h framework.Handle, binding *v1.Binding) error {
	core := h.ClientSet().CoreV1()
	if rc, ok := core.RESTClient().(*rest.RESTClient); ok && rc != nil {
		return rc.Post().Namespace(binding.Namespace).Resource("pods").Name(binding.Name).SubResource("binding").
			Body(binding).Do(ctx).Error()
	}
	return core.Pods(binding.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
}
