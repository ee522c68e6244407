package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
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
	data, headers, ok := requestInternals(req)
	if !ok {
		return nil
	}
	ct := headers["Content-Type"]
	if len(ct) != 1 {
		return nil
	}
	return &requestBody{data: data, contentType: ct[0]}
}

// requestInternals returns the encoded body and the headers req holds:
// rest.Request keeps them unexported; they are read, never written.
func requestInternals(req *rest.Request) ([]byte, http.Header, bool) {
	if req.Error() != nil {
		return nil, nil, false
	}
	v := reflect.ValueOf(req).Elem()
	data, headers := v.FieldByName("bodyBytes"), v.FieldByName("headers")
	if !data.IsValid() || data.Type() != reflect.TypeFor[[]byte]() || data.Len() == 0 ||
		!headers.IsValid() || headers.Type() != reflect.TypeFor[http.Header]() {
		return nil, nil, false
	}
	h := http.Header{}
	for _, k := range headers.MapKeys() {
		vals := headers.MapIndex(k)
		for i := range vals.Len() {
			h.Add(k.String(), vals.Index(i).String())
		}
	}
	return data.Bytes(), h, true
}

// createEncodedPod is createPod with the pod's body already encoded by
// encodePod.
func createEncodedPod(ctx context.Context, rc *rest.RESTClient, namespace string, body *requestBody) (string, error) {
	res := encodedPodRequest(rc, namespace, body).Do(ctx)
	if err := res.Error(); err != nil {
		return "", err
	}
	raw, _ := res.Raw()
	return objectName(raw)
}

func encodedPodRequest(rc *rest.RESTClient, namespace string, body *requestBody) *rest.Request {
	return rc.Post().UseProtobufAsDefault().Namespace(namespace).Resource("pods").
		SetHeader("Content-Type", body.contentType).Body(body.data)
}

// A rest.Request costs, per pod creation, as much client CPU again as
// the rest of the creation on the client side (its URL built by
// path.Join and url.URL each time, the request and header copies of the
// retry and metrics machinery). A directPost sends createEncodedPod's
// request itself: the same URL, headers and body, through the REST
// client's own http.Client (user agent, authentication, transport) after
// its rate limiter. Only the answer it can read without client-go (201
// Created, a content type the client accepts, no warnings) is read here;
// any other outcome (an error status, a transport error, a redirect, a
// warning) is handed as it came to a REST client built like rc, as the
// first answer to the same request, so that errors, retries after
// Retry-After and warnings are client-go's own.
type directPost struct {
	client    *http.Client
	limiter   flowcontrol.RateLimiter
	url       string
	header    http.Header
	body      *requestBody
	namespace string
	// replay is the REST client that takes over every other outcome.
	replay *rest.RESTClient
}

// newDirectPost returns the directPost for createEncodedPod(rc, namespace,
// body), or nil if it could not be made to send exactly that request.
func newDirectPost(rc *rest.RESTClient, namespace string, body *requestBody) *directPost {
	if rc.Client == nil || os.Getenv("KUBE_CLIENT_BACKOFF_BASE") != "" {
		// The REST client backs off per URL after errors (an
		// environment setting of client-go's): not done here.
		return nil
	}
	// A warning handler of the client's own would not be the replaying
	// client's (client-go's default, which logs them).
	if wh := reflect.ValueOf(rc).Elem().FieldByName("warningHandler"); !wh.IsValid() || wh.Kind() != reflect.Interface || !wh.IsNil() {
		return nil
	}
	req := encodedPodRequest(rc, namespace, body)
	_, header, ok := requestInternals(req)
	if !ok || len(header["Accept"]) != 1 {
		return nil
	}
	u := req.URL()
	prefix, ok := strings.CutSuffix(u.Path, "/api/v1/namespaces/"+namespace+"/pods")
	if !ok || u.RawQuery != "" {
		return nil
	}
	replayHTTP := &http.Client{
		Transport:     replayTransport{next: rc.Client.Transport},
		CheckRedirect: rc.Client.CheckRedirect,
		Jar:           rc.Client.Jar,
		Timeout:       rc.Client.Timeout,
	}
	cfg := &rest.Config{
		Host:    u.Scheme + "://" + u.Host + prefix,
		APIPath: "/api",
		ContentConfig: rest.ContentConfig{
			GroupVersion:         &v1.SchemeGroupVersion,
			NegotiatedSerializer: rest.CodecFactoryForGeneratedClient(scheme.Scheme, scheme.Codecs).WithoutConversion(),
			ContentType:          body.contentType,
			AcceptContentTypes:   header.Get("Accept"),
		},
		RateLimiter: rc.GetRateLimiter(),
	}
	if cfg.RateLimiter == nil {
		cfg.QPS = -1
	}
	replay, err := rest.RESTClientForConfigAndClient(cfg, replayHTTP)
	if err != nil {
		return nil
	}
	// The replaying client must send what rc sends, should it retry.
	rreq := encodedPodRequest(replay, namespace, body)
	_, rheader, ok := requestInternals(rreq)
	if !ok || rreq.URL().String() != u.String() || !reflect.DeepEqual(rheader, header) {
		return nil
	}
	return &directPost{client: rc.Client, limiter: rc.GetRateLimiter(), url: u.String(), header: header,
		body: body, namespace: namespace, replay: replay}
}

// create creates the pod and returns its name, as createEncodedPod.
func (d *directPost) create(ctx context.Context) (string, error) {
	if d.limiter != nil {
		if err := d.limiter.Wait(ctx); err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("client rate limiter Wait returned an error: %w", err)
			}
			return "", err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body.data))
	if err != nil {
		return "", err
	}
	req.Header = d.header.Clone()
	resp, err := d.client.Do(req)
	if err == nil && d.plainCreated(resp) {
		raw, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			return objectName(raw)
		}
		// client-go reports a failed read its own way.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(raw), errReader{rerr}))
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the replaying http.Client wraps it again
	}
	return createEncodedPod(context.WithValue(ctx, replayKey{}, &replayed{resp: resp, err: err}), d.replay, d.namespace, d.body)
}

// plainCreated reports whether resp is an answer createEncodedPod would
// read as a success with nothing else to do: 201 with a body in a
// content type the client decodes, and no warnings to log.
func (d *directPost) plainCreated(resp *http.Response) bool {
	if resp.StatusCode != http.StatusCreated || len(resp.Header["Warning"]) > 0 {
		return false
	}
	switch resp.Header.Get("Content-Type") {
	case "application/vnd.kubernetes.protobuf", "application/json":
		return true
	}
	return false
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type replayKey struct{}

// replayed is the outcome of a request a directPost sent, to be given
// once to the replaying REST client's first attempt.
type replayed struct {
	once sync.Once
	resp *http.Response
	err  error
}

// replayTransport answers a request whose context carries a replayed
// outcome with it, once; every other request (a retry) goes to next, the
// REST client's own transport.
type replayTransport struct{ next http.RoundTripper }

func (t replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if r, ok := req.Context().Value(replayKey{}).(*replayed); ok {
		first := false
		r.once.Do(func() { first = true })
		if first {
			if r.resp != nil {
				r.resp.Request = req
			}
			return r.resp, r.err
		}
	}
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(req)
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
