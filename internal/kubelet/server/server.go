// Package server is the kubelet's HTTPS API, the one the API server calls
// for pods/log, pods/exec, pods/attach and pods/portforward:
//
//	GET      /healthz
//	GET      /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&…
//	GET|POST /exec/{namespace}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=
//	GET|POST /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=
//	GET|POST /portForward/{namespace}/{pod}
//	GET      /stats/summary[?only_cpu_and_memory=true]
//
// It finds containers and sandboxes through CRI labels alone (it needs no
// pod cache) and reads the CRI log files containerd writes. Streaming
// requests are not terminated here: the runtime's Exec/Attach/PortForward
// return a URL on containerd's streaming server, and the client's upgrade
// request (SPDY or websocket) is reverse-proxied to it, as upstream's
// kubelet does without --redirect-container-streaming.
//
// Only the API server may call it: clients must present a certificate
// from the cluster CA with the common name AllowedClient. The serving
// certificate is self-signed (the API server does not verify it, which is
// upstream's default without --kubelet-certificate-authority).
package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultAllowedClient is the common name of the API server's client
// certificate for kubelets.
const DefaultAllowedClient = "system:apiserver-kubelet-client"

// CRI labels (upstream's names, also set by skiff's kubelet).
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
)

// Config configures the server.
type Config struct {
	// Addr is the listen address, e.g. ":10250".
	Addr string
	// ClientCAs verifies client certificates; AllowedClient (default
	// DefaultAllowedClient) is the only common name accepted.
	ClientCAs     *x509.CertPool
	AllowedClient string
	// NodeName and NodeIP go into the self-signed serving certificate.
	NodeName, NodeIP string
	Runtime          runtimeapi.RuntimeServiceClient
	// Stats answers /stats/summary (stats.go); nil answers 404.
	Stats  SummaryProvider
	Logger *slog.Logger
	// LogPoll is how often a followed log is re-read (default 200 ms).
	LogPoll time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// SummaryProvider assembles /stats/summary (*Stats is the real one).
type SummaryProvider interface {
	Summary(ctx context.Context) (Summary, error)
}

// Server is the kubelet API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("creating kubelet server: cri runtime is required")
	}
	if cfg.AllowedClient == "" {
		cfg.AllowedClient = DefaultAllowedClient
	}
	if cfg.LogPoll == 0 {
		cfg.LogPoll = 200 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s.mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.containerLogs)
	s.mux.HandleFunc("GET /stats/summary", s.statsSummary)
	for _, m := range []string{"GET", "POST"} {
		s.mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", s.exec)
		s.mux.HandleFunc(m+" /attach/{ns}/{pod}/{container}", s.attach)
		s.mux.HandleFunc(m+" /portForward/{ns}/{pod}", s.portForward)
	}
	return s, nil
}

// Handler serves the API without authentication (tests; Run adds TLS
// client authentication in front of it).
func (s *Server) Handler() http.Handler { return s.mux }

// Run serves HTTPS on cfg.Addr until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.ClientCAs == nil {
		return errors.New("running kubelet server: a client ca is required")
	}
	cert, err := selfSigned(s.cfg.NodeName, s.cfg.NodeIP, s.cfg.Now())
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening for the kubelet api: %w", err)
	}
	srv := &http.Server{
		Handler:           s.authorize(s.mux),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    s.cfg.ClientCAs,
			// Streaming upgrades need HTTP/1.1.
			NextProtos: []string{"http/1.1"},
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	s.log.Info("serving the kubelet api", "addr", l.Addr().String())
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the kubelet api: %w", err)
	}
	return nil
}

// authorize admits only the allowed client certificate.
func (s *Server) authorize(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != s.cfg.AllowedClient {
			http.Error(w, "Forbidden: only the API server may call the kubelet API", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func selfSigned(nodeName, nodeIP string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating kubelet serving key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeName + "@" + strconv.FormatInt(now.Unix(), 10)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{nodeName, "localhost"},
	}
	if ip := net.ParseIP(nodeIP); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating kubelet serving certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// containers are the CRI containers of ns/pod named name, newest first.
func (s *Server) containers(ctx context.Context, ns, pod, name string) ([]*runtimeapi.Container, error) {
	resp, err := s.cfg.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{labelPodNamespace: ns, labelPodName: pod, labelContainerName: name},
	}})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	cs := resp.GetContainers()
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].GetCreatedAt() > cs[j].GetCreatedAt() })
	return cs, nil
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := ParseLogOptions(r.URL.Query(), s.cfg.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cs, err := s.containers(r.Context(), ns, pod, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	idx := 0
	if opts.Previous {
		idx = 1
	}
	if len(cs) <= idx {
		msg := fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", name, pod)
		if opts.Previous {
			msg = fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod)
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	id := cs[idx].GetId()
	st, err := s.cfg.Runtime.ContainerStatus(r.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		http.Error(w, fmt.Sprintf("getting status of container %s: %v", id, err), http.StatusInternalServerError)
		return
	}
	path := st.GetStatus().GetLogPath()
	if path == "" {
		http.Error(w, fmt.Sprintf("container %q in pod %q has no log file", name, pod), http.StatusBadRequest)
		return
	}
	running := func() bool {
		st, err := s.cfg.Runtime.ContainerStatus(r.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		return err == nil && st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	w.Header().Set("Content-Type", "text/plain")
	flush := func() { _ = http.NewResponseController(w).Flush() }
	if err := ReadLogs(r.Context(), path, opts, w, flush, running, s.cfg.LogPoll); err != nil {
		s.log.Debug("serving container logs", "pod", ns+"/"+pod, "container", name, "err", err)
	}
}

// runningContainer is the newest container of ns/pod named name, which
// must be running.
func (s *Server) runningContainer(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	cs, err := s.containers(r.Context(), ns, pod, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return "", false
	}
	if len(cs) == 0 || cs[0].GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		http.Error(w, fmt.Sprintf("container %s is not running in pod %s_%s", name, pod, ns), http.StatusBadRequest)
		return "", false
	}
	return cs[0].GetId(), true
}

type streamOpts struct{ stdin, stdout, stderr, tty bool }

func parseStreamOpts(q url.Values) streamOpts {
	// Upstream accepts "1" and "true"; kubectl sends "true".
	b := func(k string) bool { v, _ := strconv.ParseBool(q.Get(k)); return v }
	return streamOpts{stdin: b("input") || b("stdin"), stdout: b("output") || b("stdout"), stderr: b("error") || b("stderr"), tty: b("tty")}
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		http.Error(w, "missing command", http.StatusBadRequest)
		return
	}
	id, ok := s.runningContainer(w, r)
	if !ok {
		return
	}
	o := parseStreamOpts(q)
	resp, err := s.cfg.Runtime.Exec(r.Context(), &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr && !o.tty})
	if err != nil {
		http.Error(w, fmt.Sprintf("preparing exec: %v", err), http.StatusInternalServerError)
		return
	}
	s.proxyStream(w, r, resp.GetUrl())
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	id, ok := s.runningContainer(w, r)
	if !ok {
		return
	}
	o := parseStreamOpts(r.URL.Query())
	resp, err := s.cfg.Runtime.Attach(r.Context(), &runtimeapi.AttachRequest{ContainerId: id, Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr && !o.tty})
	if err != nil {
		http.Error(w, fmt.Sprintf("preparing attach: %v", err), http.StatusInternalServerError)
		return
	}
	s.proxyStream(w, r, resp.GetUrl())
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	resp, err := s.cfg.Runtime.ListPodSandbox(r.Context(), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{labelPodNamespace: ns, labelPodName: pod},
	}})
	if err != nil {
		http.Error(w, fmt.Sprintf("listing sandboxes: %v", err), http.StatusInternalServerError)
		return
	}
	sbs := resp.GetItems()
	if len(sbs) == 0 {
		http.Error(w, fmt.Sprintf("pod %s_%s has no running sandbox", pod, ns), http.StatusNotFound)
		return
	}
	sort.SliceStable(sbs, func(i, j int) bool { return sbs[i].GetCreatedAt() > sbs[j].GetCreatedAt() })
	var ports []int32
	for _, p := range r.URL.Query()["port"] {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			http.Error(w, fmt.Sprintf("invalid port %q", p), http.StatusBadRequest)
			return
		}
		ports = append(ports, int32(n))
	}
	pf, err := s.cfg.Runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sbs[0].GetId(), Port: ports})
	if err != nil {
		http.Error(w, fmt.Sprintf("preparing port forward: %v", err), http.StatusInternalServerError)
		return
	}
	s.proxyStream(w, r, pf.GetUrl())
}

// proxyStream hands the client's upgrade request to the runtime's
// streaming server; the options travel in the URL's one-time token.
func (s *Server) proxyStream(w http.ResponseWriter, r *http.Request, target string) {
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, fmt.Sprintf("parsing streaming url: %v", err), http.StatusInternalServerError)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := *u
			pr.Out.URL = &out
			pr.Out.Host = u.Host
			// The TLS client identity stays here; nothing else leaks.
			pr.Out.Header.Del("Authorization")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, fmt.Sprintf("proxying to the container runtime: %v", err), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}
