package apiserver

import (
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"

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

	// outputs remembers negotiated Accept headers: clients send the same
	// few, and parsing one (mime.ParseMediaType per part, a map each)
	// cost more than the lookup. Bounded, as the headers are the
	// clients' choice.
	mu      sync.RWMutex
	outputs map[outputKey]outputResult
}

type outputKey struct {
	accept  string
	allowed uint8 // bit k: outputKind k allowed
}

type outputResult struct {
	mc  mediaChoice
	err error
}

const maxCachedAccepts = 128

func newNegotiator(codecs serializer.CodecFactory) *negotiator {
	n := &negotiator{codecs: codecs, byType: map[string]runtime.SerializerInfo{}, outputs: map[outputKey]outputResult{}}
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
	k := outputKey{accept: accept}
	for _, a := range allowed {
		k.allowed |= 1 << a
	}
	n.mu.RLock()
	res, ok := n.outputs[k]
	n.mu.RUnlock()
	if ok {
		return res.mc, res.err
	}
	res.mc, res.err = n.negotiateOutput(accept, allowed)
	n.mu.Lock()
	if len(n.outputs) < maxCachedAccepts {
		n.outputs[k] = res
	}
	n.mu.Unlock()
	return res.mc, res.err
}

// negotiateOutput parses an Accept header: the first acceptable part wins.
func (n *negotiator) negotiateOutput(accept string, allowed []outputKind) (mediaChoice, error) {
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
	if info, ok := n.byType[ct]; ok {
		// A bare media type, as client-go sends: what parsing gives.
		return info, nil
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
