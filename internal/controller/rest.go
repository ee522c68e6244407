package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The typed clients spend, per request, as much client CPU on work a
// controller creating thousands of pods does not need as on the request
// itself: empty options converted to query parameters through reflection
// (VersionedParams), and the whole answer decoded into a new object that
// is thrown away. A request through the clientset's own RESTClient sends
// the same bytes to the same URL and reads only what it needs.

// CoreREST returns client's core/v1 REST client, or nil when client is not
// one that talks HTTP (a fake clientset): callers fall back to the typed
// client then.
func CoreREST(client kubernetes.Interface) *rest.RESTClient {
	rc, ok := client.CoreV1().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil || rc.Client == nil {
		return nil
	}
	return rc
}

// protobufMagic starts every Kubernetes protobuf body.
var protobufMagic = []byte("k8s\x00")

// createPod creates pod through rc (the request the typed client sends for
// empty CreateOptions: POST, protobuf unless the client was configured
// otherwise, no query parameters) and returns the name the
// API server gave it, decoding nothing else of the answer.
func createPod(ctx context.Context, rc *rest.RESTClient, namespace string, pod *v1.Pod) (string, error) {
	res := rc.Post().UseProtobufAsDefault().Namespace(namespace).Resource("pods").Body(pod).Do(ctx)
	// Error, not Raw's error: it decodes the API's Status (reason,
	// causes) from a failed request's body, as the typed client does.
	if err := res.Error(); err != nil {
		return "", err
	}
	raw, _ := res.Raw()
	return objectName(raw)
}

// objectName reads metadata.name from an API server's answer, protobuf or
// JSON, skipping the rest of the object.
func objectName(raw []byte) (string, error) {
	if rest, ok := bytes.CutPrefix(raw, protobufMagic); ok {
		var unk runtime.Unknown
		if err := unk.Unmarshal(rest); err != nil {
			return "", fmt.Errorf("decoding answer: %w", err)
		}
		// Every object's message has its ObjectMeta as field 1, like
		// PartialObjectMetadata; the other fields are skipped.
		var m metav1.PartialObjectMetadata
		if err := m.Unmarshal(unk.Raw); err != nil {
			return "", fmt.Errorf("decoding answer's metadata: %w", err)
		}
		return m.Name, nil
	}
	var m struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("decoding answer: %w", err)
	}
	return m.Metadata.Name, nil
}
