package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"

	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
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

// requestBody is a request's encoded body and its content type.
type requestBody struct {
	data        []byte
	contentType string
}

// encodePod returns the body createPod would send for pod, encoded by the
// REST client itself (so in its configured content type, byte for byte),
// or nil if it cannot be read back from the request (a client-go whose
// Request no longer holds it where this expects).
func encodePod(rc *rest.RESTClient, namespace string, pod *v1.Pod) *requestBody {
	req := rc.Post().UseProtobufAsDefault().Namespace(namespace).Resource("pods").Body(pod)
	if req.Error() != nil {
		return nil
	}
	// rest.Request keeps the encoded body and headers unexported; they
	// are read, never written.
	v := reflect.ValueOf(req).Elem()
	data, headers := v.FieldByName("bodyBytes"), v.FieldByName("headers")
	if !data.IsValid() || data.Type() != reflect.TypeFor[[]byte]() || data.Len() == 0 ||
		!headers.IsValid() || headers.Type() != reflect.TypeFor[http.Header]() {
		return nil
	}
	ct := headers.MapIndex(reflect.ValueOf("Content-Type"))
	if !ct.IsValid() || ct.Len() != 1 {
		return nil
	}
	return &requestBody{data: data.Bytes(), contentType: ct.Index(0).String()}
}

// createEncodedPod is createPod with the pod's body already encoded by
// encodePod.
func createEncodedPod(ctx context.Context, rc *rest.RESTClient, namespace string, body *requestBody) (string, error) {
	res := rc.Post().UseProtobufAsDefault().Namespace(namespace).Resource("pods").
		SetHeader("Content-Type", body.contentType).Body(body.data).Do(ctx)
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
		// runtime.Unknown's raw (field 2) is the object, whose
		// metadata is field 1 (like PartialObjectMetadata's), whose
		// name is field 1. Walking the wire format to it decodes
		// nothing else (managed fields, labels) of the answer.
		name, _, err := protobufString(rest, 2, 1, 1)
		if err != nil {
			return "", fmt.Errorf("decoding answer: %w", err)
		}
		return name, nil
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

// protobufString returns the string at path (field numbers, the last a
// string, the others embedded messages) in the protobuf message b, as a
// decoder would see it: the last occurrence wins, occurrences of an
// embedded message merge. It reports whether the field is present.
func protobufString(b []byte, path ...protowire.Number) (string, bool, error) {
	var value string
	var found bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false, protowire.ParseError(n)
		}
		b = b[n:]
		if num != path[0] || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", false, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false, protowire.ParseError(n)
		}
		b = b[n:]
		if len(path) == 1 {
			value, found = string(v), true
			continue
		}
		if s, ok, err := protobufString(v, path[1:]...); err != nil {
			return "", false, err
		} else if ok {
			value, found = s, true
		}
	}
	return value, found, nil
}
