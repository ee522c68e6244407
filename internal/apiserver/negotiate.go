package apiserver

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// Media types skiff speaks.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// outputKind is the shape of the response the client asked for.
type outputKind int

const (
	outputObject outputKind = iota
	outputTable
	outputPartialMetadata
	outputDiscoveryV2
	outputDiscoveryV2Beta1
)

// mediaChoice is the negotiated output.
type mediaChoice struct {
	info runtime.SerializerInfo
	kind outputKind
}

// negotiator picks serializers from the Accept header.
type negotiator struct {
	codecs serializer.CodecFactory
	byType map[string]runtime.SerializerInfo
}

func newNegotiator(codecs serializer.CodecFactory) *negotiator {
	n := &negotiator{codecs: codecs, byType: map[string]runtime.SerializerInfo{}}
	for _, info := range codecs.SupportedMediaTypes() {
		n.byType[info.MediaType] = info
	}
	return n
}

// output negotiates the response format. allowed says which "as=" shapes
// the endpoint can produce besides plain objects.
func (n *negotiator) output(r *http.Request, allowed ...outputKind) (mediaChoice, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return mediaChoice{info: n.byType[mediaJSON]}, nil
	}
	for _, part := range strings.Split(accept, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		switch mt {
		case "*/*", "application/*":
			mt = mediaJSON
		case "application/json;stream=watch":
			mt = mediaJSON
		}
		info, ok := n.byType[mt]
		if !ok {
			continue
		}
		kind := outputObject
		if as := params["as"]; as != "" {
			g, v := params["g"], params["v"]
			switch {
			case as == "Table" && g == "meta.k8s.io" && (v == "v1" || v == "v1beta1"):
				kind = outputTable
			case (as == "PartialObjectMetadata" || as == "PartialObjectMetadataList") && g == "meta.k8s.io" && (v == "v1" || v == "v1beta1"):
				kind = outputPartialMetadata
			case as == "APIGroupDiscoveryList" && g == "apidiscovery.k8s.io" && v == "v2":
				kind = outputDiscoveryV2
			case as == "APIGroupDiscoveryList" && g == "apidiscovery.k8s.io" && v == "v2beta1":
				kind = outputDiscoveryV2Beta1
			default:
				continue
			}
			if !kindAllowed(kind, allowed) {
				continue
			}
			if kind == outputTable && mt == mediaProtobuf {
				// Tables are served as JSON only.
				continue
			}
		}
		return mediaChoice{info: info, kind: kind}, nil
	}
	return mediaChoice{}, fmt.Errorf("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf")
}

func kindAllowed(k outputKind, allowed []outputKind) bool {
	for _, a := range allowed {
		if a == k {
			return true
		}
	}
	return false
}

// input picks the decoder for a request body by Content-Type.
func (n *negotiator) input(r *http.Request) (runtime.SerializerInfo, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return n.byType[mediaJSON], nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return runtime.SerializerInfo{}, fmt.Errorf("invalid Content-Type %q", ct)
	}
	info, ok := n.byType[mt]
	if !ok {
		return runtime.SerializerInfo{}, fmt.Errorf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
	}
	return info, nil
}
