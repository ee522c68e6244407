// Package apiserver is skiff's Kubernetes API server: the HTTP layer that
// authenticates requests, negotiates content types, maps URLs to resources
// and verbs, and calls the generic registry stores (internal/registry/generic)
// that hold the object semantics. Discovery, OpenAPI, tables, watches,
// patches (JSON, merge, strategic merge, server-side apply), subresources
// and the health and metrics endpoints live here.
//
// The server is built from explicit dependencies (Config); it owns no
// storage itself. Run serves HTTPS until the context ends.
package apiserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/managedfields"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/gopool"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

// The request worker pool keeps at most maxIdleWorkers idle workers (each
// stack up to 64 KiB), each for at most workerIdle.
const (
	maxIdleWorkers = 64
	workerIdle     = 10 * time.Second
)

// Config is everything the API server needs.
type Config struct {
	Scheme *runtime.Scheme
	// Stores, one per served resource (group version + resource).
	Stores []*generic.Store
	// TypeConverter for server-side apply.
	TypeConverter managedfields.TypeConverter
	// Authenticator authenticates requests; nil allows everything as
	// system:admin (tests only).
	Authenticator authn.Authenticator
	// Subresources handles the special subresources (binding, eviction,
	// token, scale ...), see subresources.go; may be nil.
	Extra ExtraHandlers
	// Delegated groups are served by their own handlers (delegated.go).
	Delegated []DelegatedGroup
	// OpenAPI serves /openapi/*; may be nil.
	OpenAPI http.Handler
	// Ready reports whether /readyz is OK (storage reachable, bootstrap done).
	Ready func() error
	// Version is returned by /version.
	Version VersionInfo
	// MaxRequestsInFlight bounds concurrent non-watch requests (429 beyond).
	MaxRequestsInFlight int
	// ExternalAddress is advertised in discovery (host:port).
	ExternalAddress string
	Logger          *slog.Logger
}

// VersionInfo is /version.
type VersionInfo struct {
	Major, Minor, GitVersion, GitCommit, BuildDate, GoVersion, Platform string
}

// ExtraHandlers serve subresources that are not plain object updates.
type ExtraHandlers interface {
	// Handle serves a subresource request; ok=false if it is not one it
	// knows (then the generic code answers 404/405).
	Handle(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) (ok bool)
}

// Server is the API server.
type Server struct {
	cfg       Config
	codecs    serializer.CodecFactory
	neg       *negotiator
	strictDec map[string]runtime.Decoder
	log       *slog.Logger

	// stores by "group/version/resource".
	stores map[string]*generic.Store
	// groups in discovery order.
	groups    []groupInfo
	inflight  atomic.Int64
	metrics   *metrics
	discovery *discoveryCache
	// workers run requests that end on their own (withWorkers).
	workers *gopool.Pool
	handler http.Handler
	// createdJSON is createdStatus as JSON (writeCreatedStatus).
	createdJSON []byte
}

type groupInfo struct {
	name     string
	versions []string
}

// New builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Scheme == nil {
		return nil, errors.New("apiserver: scheme is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRequestsInFlight == 0 {
		cfg.MaxRequestsInFlight = 1000
	}
	s := &Server{
		cfg:    cfg,
		codecs: serializer.NewCodecFactory(cfg.Scheme),
		log:    cfg.Logger,
		stores: map[string]*generic.Store{},
	}
	s.neg = newNegotiator(s.codecs)
	var created bytes.Buffer
	if err := s.neg.byType[mediaJSON].Serializer.Encode(createdStatus(), &created); err != nil {
		return nil, fmt.Errorf("apiserver: encoding the created Status: %w", err)
	}
	s.createdJSON = created.Bytes()
	s.strictDec = map[string]runtime.Decoder{
		mediaJSON: json.NewSerializerWithOptions(json.DefaultMetaFactory, cfg.Scheme, cfg.Scheme, json.SerializerOptions{Strict: true}),
		mediaYAML: json.NewSerializerWithOptions(json.DefaultMetaFactory, cfg.Scheme, cfg.Scheme, json.SerializerOptions{Yaml: true, Strict: true}),
	}
	seen := map[string]map[string]bool{}
	for _, st := range cfg.Stores {
		gv := st.R.GroupVersion
		s.stores[storeKey(gv, st.R.Resource)] = st
		if seen[gv.Group] == nil {
			seen[gv.Group] = map[string]bool{}
			s.groups = append(s.groups, groupInfo{name: gv.Group})
		}
		if !seen[gv.Group][gv.Version] {
			seen[gv.Group][gv.Version] = true
			for i := range s.groups {
				if s.groups[i].name == gv.Group {
					s.groups[i].versions = append(s.groups[i].versions, gv.Version)
				}
			}
		}
	}
	// Preferred version first: v2 before v1, v1 before v1beta1.
	for i := range s.groups {
		sort.SliceStable(s.groups[i].versions, func(a, b int) bool {
			return versionPriority(s.groups[i].versions[a]) > versionPriority(s.groups[i].versions[b])
		})
	}
	s.metrics = newMetrics()
	s.discovery = newDiscoveryCache(s)
	s.workers = gopool.New(maxIdleWorkers, workerIdle)
	s.handler = s.buildHandler()
	return s, nil
}

func versionPriority(v string) int {
	// v2 > v1 > v2beta1 > v1beta1 > alpha.
	var major, kind, minor int
	switch {
	case strings.Contains(v, "alpha"):
		kind = 0
	case strings.Contains(v, "beta"):
		kind = 1
	default:
		kind = 2
	}
	fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d", &major)
	if i := strings.IndexAny(v, "ab"); i > 0 {
		fmt.Sscanf(strings.TrimLeft(v[i:], "alphbet"), "%d", &minor)
	}
	return kind*10000 + major*100 + minor
}

func storeKey(gv schema.GroupVersion, resource string) string {
	return gv.Group + "/" + gv.Version + "/" + resource
}

// Store returns the store serving group/version/resource.
func (s *Server) Store(gv schema.GroupVersion, resource string) *generic.Store {
	return s.stores[storeKey(gv, resource)]
}

// Codecs returns the serializer factory.
func (s *Server) Codecs() serializer.CodecFactory { return s.codecs }

// Handler is the full HTTP handler (filters included).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTPS on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener, tlsConfig *tls.Config) error {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	// ServeTLS (rather than a tls.Listener) lets net/http offer HTTP/2, so
	// a client's many requests and watches share one connection.
	srv.TLSConfig = tlsConfig.Clone()
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serving https: %w", err)
	}
}

// resourceFor finds the store for a request, or writes 404.
func (s *Server) resourceFor(w http.ResponseWriter, r *http.Request, ri *RequestInfo) *generic.Store {
	st := s.stores[storeKey(schema.GroupVersion{Group: ri.APIGroup, Version: ri.APIVersion}, ri.Resource)]
	if st == nil {
		s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{Group: ri.APIGroup, Resource: ri.Resource}, ""))
		return nil
	}
	return st
}

// Resources lists every served resource descriptor.
func (s *Server) Resources() []*registry.Resource {
	out := make([]*registry.Resource, 0, len(s.cfg.Stores))
	for _, st := range s.cfg.Stores {
		out = append(out, st.R)
	}
	return out
}

func statusFor(err error) *metav1.Status {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		return &s
	}
	return &apierrors.NewInternalError(err).ErrStatus
}
