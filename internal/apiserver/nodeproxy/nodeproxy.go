// Package nodeproxy is the API server's side of the kubelet API: it turns
// pods/log, pods/exec, pods/attach, pods/portforward and nodes/proxy
// requests into kubelet URLs (the pod's node address and
// status.daemonEndpoints.kubeletEndpoint port) and proxies them, upgrades
// included.
//
// The API server authenticates to kubelets with a client certificate from
// the cluster CA (CN system:apiserver-kubelet-client). It does not verify
// the kubelet's serving certificate, which is self-signed: this is
// upstream's behaviour without --kubelet-certificate-authority, and is
// where a kubelet serving CA would plug in.
package nodeproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/apiserver"
)

// DefaultContainerAnnotation names the container kubectl and the API
// server pick when a pod has several.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Config configures the proxy.
type Config struct {
	// ClientCert and ClientKey (PEM) authenticate the API server to
	// kubelets.
	ClientCert, ClientKey []byte
	Logger                *slog.Logger
}

// Proxy serves the streaming subresources.
type Proxy struct {
	transport *http.Transport
	log       *slog.Logger
}

// New builds a Proxy.
func New(cfg Config) (*Proxy, error) {
	cert, err := tls.X509KeyPair(cfg.ClientCert, cfg.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("loading kubelet client certificate: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &http.Transport{
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// See the package doc: kubelet serving certs are self-signed.
			InsecureSkipVerify: true, //nolint:gosec // documented above
		},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 10,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Proxy{transport: t, log: cfg.Logger}, nil
}

// Handle is apiserver.PodSubresources.NodeProxy.
func (p *Proxy) Handle(w http.ResponseWriter, r *http.Request, ri *apiserver.RequestInfo, s *apiserver.Server) bool {
	if ri.Resource == "services" {
		return false
	}
	var (
		nodeName string
		path     string
		query    url.Values
		err      error
	)
	if ri.Resource == "nodes" {
		nodeName = ri.Name
		path = "/" + strings.Join(proxyRest(ri.Parts), "/")
		query = r.URL.Query()
	} else {
		var pod *corev1.Pod
		pod, err = getPod(r.Context(), s, ri.Namespace, ri.Name)
		if err != nil {
			writeStatus(w, err)
			return true
		}
		nodeName = pod.Spec.NodeName
		path, query, err = KubeletPath(pod, ri.Subresource, r.URL.Query())
		if err != nil {
			writeStatus(w, err)
			return true
		}
	}
	if nodeName == "" {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", ri.Name)))
		return true
	}
	obj, err := s.Store(corev1.SchemeGroupVersion, "nodes").Get(r.Context(), "", nodeName, metav1.GetOptions{})
	if err != nil {
		writeStatus(w, err)
		return true
	}
	host, err := KubeletHost(obj.(*corev1.Node))
	if err != nil {
		writeStatus(w, err)
		return true
	}
	target := &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: query.Encode()}
	if ri.Subresource == "log" {
		p.logs(w, r, target)
		return true
	}
	p.proxy(w, r, target)
	return true
}

// proxyRest is the path after ".../nodes/NAME/proxy".
func proxyRest(parts []string) []string {
	for i, s := range parts {
		if s == "proxy" && i >= 2 {
			return parts[i+1:]
		}
	}
	return nil
}

func getPod(ctx context.Context, s *apiserver.Server, ns, name string) (*corev1.Pod, error) {
	obj, err := s.Store(corev1.SchemeGroupVersion, "pods").Get(ctx, ns, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Pod), nil
}

// KubeletHost is host:port of the node's kubelet API.
func KubeletHost(n *corev1.Node) (string, error) {
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	var addr string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range n.Status.Addresses {
			if a.Type == t && addr == "" {
				addr = a.Address
			}
		}
	}
	if addr == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s has no address", n.Name))
	}
	return net.JoinHostPort(addr, strconv.Itoa(port)), nil
}

// KubeletPath translates a pod subresource request to the kubelet path and
// query.
func KubeletPath(pod *corev1.Pod, sub string, q url.Values) (string, url.Values, error) {
	switch sub {
	case "portforward":
		out := url.Values{}
		if ps, ok := q["ports"]; ok {
			for _, p := range ps {
				for _, one := range strings.Split(p, ",") {
					out.Add("port", one)
				}
			}
		}
		return "/portForward/" + pod.Namespace + "/" + pod.Name, out, nil
	case "log", "exec", "attach":
	default:
		return "", nil, apierrors.NewNotFound(corev1.Resource("pods/"+sub), pod.Name)
	}
	container, err := pickContainer(pod, q.Get("container"))
	if err != nil {
		return "", nil, err
	}
	out := url.Values{}
	for k, v := range q {
		if k != "container" {
			out[k] = v
		}
	}
	if sub == "log" {
		return "/containerLogs/" + pod.Namespace + "/" + pod.Name + "/" + container, out, nil
	}
	if sub == "exec" && len(q["command"]) == 0 {
		return "", nil, apierrors.NewBadRequest("you must specify at least 1 command")
	}
	return "/" + sub + "/" + pod.Namespace + "/" + pod.Name + "/" + container, out, nil
}

// pickContainer validates name, or picks the default container as
// upstream does.
func pickContainer(pod *corev1.Pod, name string) (string, error) {
	all := map[string]bool{}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			all[c.Name] = true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		all[c.Name] = true
	}
	if name != "" {
		if !all[name] {
			return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
		}
		return name, nil
	}
	if d := pod.Annotations[DefaultContainerAnnotation]; d != "" && all[d] {
		return d, nil
	}
	if len(pod.Spec.Containers) == 1 {
		return pod.Spec.Containers[0].Name, nil
	}
	var app []string
	for _, c := range pod.Spec.Containers {
		app = append(app, c.Name)
	}
	msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, app)
	if len(pod.Spec.InitContainers) > 0 {
		var ini []string
		for _, c := range pod.Spec.InitContainers {
			ini = append(ini, c.Name)
		}
		msg += fmt.Sprintf(" or one of the init containers: %v", ini)
	}
	return "", apierrors.NewBadRequest(msg)
}

// logs streams the kubelet's answer, turning a kubelet error into a
// Status so kubectl prints it as the server's message.
func (p *Proxy) logs(w http.ResponseWriter, r *http.Request, target *url.URL) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target.String(), nil)
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("calling the kubelet: %v", err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		writeStatus(w, apierrors.NewGenericServerResponse(resp.StatusCode, "get", corev1.Resource("pods/log"), "", strings.TrimSpace(string(msg)), 0, false))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// proxy forwards the request, upgrades included.
func (p *Proxy) proxy(w http.ResponseWriter, r *http.Request, target *url.URL) {
	rp := &httputil.ReverseProxy{
		Transport: p.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := *target
			pr.Out.URL = &t
			pr.Out.Host = target.Host
			// The caller's credentials stay with the API server.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Impersonate-User")
			pr.Out.Header.Del("Impersonate-Group")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("proxying to the kubelet: %v", err)))
		},
	}
	rp.ServeHTTP(w, r)
}

// writeStatus writes err as a JSON metav1.Status.
func writeStatus(w http.ResponseWriter, err error) {
	st := apierrors.APIStatus(nil)
	if s, ok := err.(apierrors.APIStatus); ok {
		st = s
	} else {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	if status.Code == 0 {
		status.Code = http.StatusInternalServerError
	}
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Code))
	_, _ = w.Write(b.Bytes())
}
