// Package defaultbinder is the DefaultBinder: it writes the placement
// through the pods/binding subresource.
package defaultbinder

import (
	"context"
	"fmt"
	"io"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
// all. The body is the JSON the client's codec writes (bindingJSON),
// built directly: encoding the Binding by reflection was another quarter.
// Clients without a REST client (fakes) get the typed call.
//
// Every client skiff builds leaves rest.Config.ContentType empty, which
// means JSON; a client configured for another content type would still
// get its binding sent as JSON (the API server reads both the same).
func post(ctx context.Context, h framework.Handle, binding *v1.Binding) error {
	core := h.ClientSet().CoreV1()
	if rc, ok := core.RESTClient().(*rest.RESTClient); ok && rc != nil {
		r := rc.Post().Namespace(binding.Namespace).Resource("pods").Name(binding.Name).SubResource("binding")
		if body := bindingJSON(binding); body != nil {
			r = r.SetHeader("Content-Type", runtime.ContentTypeJSON).Body(body)
		} else {
			r = r.Body(binding)
		}
		// Stream, not Do: the answer (a Status) is never looked at on
		// success, so it is drained into io.Discard's pooled buffer rather
		// than read into a new slice and its content type parsed; a
		// failure's body becomes the same API error either way.
		body, err := r.Stream(ctx)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, body)
		if cerr := body.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return core.Pods(binding.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
}

// bindingJSON is the client codec's JSON for the Bindings Bind builds
// (only metadata's namespace, name and uid and target's kind and name
// set; other fields are not read), byte for byte, or nil when a string
// needs JSON escaping (the caller then encodes the object).
func bindingJSON(b *v1.Binding) []byte {
	for _, s := range []string{b.Namespace, b.Name, string(b.UID), b.Target.Kind, b.Target.Name} {
		if !plain(s) {
			return nil
		}
	}
	out := make([]byte, 0, 128+len(b.Namespace)+len(b.Name)+len(b.UID)+len(b.Target.Kind)+len(b.Target.Name))
	out = append(out, `{"kind":"Binding","apiVersion":"v1","metadata":{`...)
	// ObjectMeta's fields in declaration order, all omitted when empty
	// (creationTimestamp is omitzero in this k8s.io/api; the tests hold
	// this against the codec).
	sep := false
	field := func(key, v string) {
		if v == "" {
			return
		}
		if sep {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, key...)
		out = append(out, `":"`...)
		out = append(out, v...)
		out = append(out, '"')
		sep = true
	}
	field("name", b.Name)
	field("namespace", b.Namespace)
	field("uid", string(b.UID))
	out = append(out, `},"target":{`...)
	sep = false
	field("kind", b.Target.Kind)
	field("name", b.Target.Name)
	return append(out, "}}\n"...)
}

// plain reports whether JSON writes s without escapes (the characters of
// names, namespaces and UIDs).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}
