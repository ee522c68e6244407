// Package etcd runs the embedded etcd server skiff uses when no external
// etcd is configured, and builds clients for either kind.
//
// Contract:
//   - Start returns once the server is ready to serve client requests (it
//     has elected itself leader and applied its log), or an error.
//   - Listen URLs may use port 0; Endpoints reports the bound addresses, so
//     tests can run many servers side by side without choosing ports.
//   - Old revisions are compacted automatically (periodic, 5 minutes by
//     default, like the upstream API server's compaction interval), so
//     watches and paginated lists older than that window get 410 Gone.
//   - Close stops the server and waits for it; it is safe to call twice.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults used when the corresponding Config field is zero.
const (
	DefaultName              = "skiff"
	DefaultListenClientURL   = "http://127.0.0.1:2379"
	DefaultListenPeerURL     = "http://127.0.0.1:2380"
	DefaultCompactionMode    = "periodic"
	DefaultCompactionRetain  = "5m"
	DefaultQuotaBackendBytes = 8 << 30 // 8 GiB, etcd's recommended maximum
	DefaultStartTimeout      = 30 * time.Second
)

// Config describes an embedded etcd member. Zero values take the defaults
// above.
type Config struct {
	// DataDir holds the WAL and the backend database. Required.
	DataDir string
	// Name of the member.
	Name string
	// ListenClientURLs and ListenPeerURLs are the addresses to bind
	// (port 0 picks a free port).
	ListenClientURLs []string
	ListenPeerURLs   []string
	// AdvertiseClientURLs default to the listen client URLs.
	AdvertiseClientURLs []string
	// CompactionMode is "periodic" (CompactionRetention is a duration such
	// as "5m") or "revision" (CompactionRetention is a number of revisions
	// to keep). CompactionRetention "0" disables auto compaction.
	CompactionMode      string
	CompactionRetention string
	// QuotaBackendBytes is the backend size above which etcd raises a
	// NOSPACE alarm and refuses writes.
	QuotaBackendBytes int64
	// UnsafeNoFsync skips fsync: for tests only, data may be lost on a crash.
	UnsafeNoFsync bool
	// TickMs and ElectionMs tune raft timing. A single member elects itself
	// after roughly one election timeout on restart, so the defaults are
	// smaller than etcd's (10 ms / 100 ms instead of 100 ms / 1000 ms): the
	// member never waits on peers, and this shortens restart.
	TickMs, ElectionMs uint
	// WatchProgressNotifyInterval is how often etcd sends progress
	// notifications to idle watchers that asked for them (0 = etcd default).
	WatchProgressNotifyInterval time.Duration
	// LogLevel of etcd's zap logger; default "error".
	LogLevel string
	// StartTimeout bounds the wait for readiness.
	StartTimeout time.Duration
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	gate      *closingGate
	endpoints []string
	closeOnce sync.Once
}

// Start launches an embedded etcd member and waits until it is ready.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("starting etcd: data dir is required")
	}
	ec, gate, err := embedConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		gate.closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd: %w", err)
	case <-t.C:
		gate.closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd: not ready after %s", timeout)
	case <-ctx.Done():
		gate.closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("starting etcd: %w", ctx.Err())
	}
	s := &Server{etcd: e, gate: gate}
	scheme := "http"
	if ec.ClientTLSInfo.CertFile != "" {
		scheme = "https"
	}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, scheme+"://"+l.Addr().String())
	}
	return s, nil
}

func embedConfig(cfg Config) (*embed.Config, *closingGate, error) {
	ec := embed.NewConfig()
	ec.Dir = cfg.DataDir
	ec.Name = orDefault(cfg.Name, DefaultName)
	lc, err := parseURLs(cfg.ListenClientURLs, DefaultListenClientURL)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing listen client urls: %w", err)
	}
	lp, err := parseURLs(cfg.ListenPeerURLs, DefaultListenPeerURL)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing listen peer urls: %w", err)
	}
	ac := lc
	if len(cfg.AdvertiseClientURLs) > 0 {
		if ac, err = parseURLs(cfg.AdvertiseClientURLs, ""); err != nil {
			return nil, nil, fmt.Errorf("parsing advertise client urls: %w", err)
		}
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = lc, ac
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = lp, lp
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.AutoCompactionMode = orDefault(cfg.CompactionMode, DefaultCompactionMode)
	ec.AutoCompactionRetention = orDefault(cfg.CompactionRetention, DefaultCompactionRetain)
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	if ec.QuotaBackendBytes == 0 {
		ec.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.TickMs, ec.ElectionMs = 10, 100
	if cfg.TickMs != 0 {
		ec.TickMs = cfg.TickMs
	}
	if cfg.ElectionMs != 0 {
		ec.ElectionMs = cfg.ElectionMs
	}
	if cfg.WatchProgressNotifyInterval != 0 {
		ec.WatchProgressNotifyInterval = cfg.WatchProgressNotifyInterval
	}
	// The API server's object size limit is 1.5 MiB of encoded object; allow
	// a little room for the request envelope.
	ec.MaxRequestBytes = 2 << 20
	ec.Metrics = "basic"
	ec.EnableGRPCGateway = false
	level, err := zapcore.ParseLevel(orDefault(cfg.LogLevel, "error"))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing log level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.Sampling = nil
	lg, err := zc.Build()
	if err != nil {
		return nil, nil, fmt.Errorf("building logger: %w", err)
	}
	// etcd logs every listener it closes during a clean shutdown at error
	// level; silence the logger once Close has begun.
	gate := &closingGate{}
	lg = lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return &gatedCore{Core: c, gate: gate} }))
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	ec.Logger = "zap"
	return ec, gate, nil
}

// benignStartupError is logged by etcd 3.7 when its storage-version
// monitor runs (on the cluster version being set) before the first raft
// term reaches the backend; the monitor retries and succeeds, so a fresh
// single member always logs it once at error level.
const benignStartupError = "failed to update storage version"

type closingGate struct{ closing atomic.Bool }

// gatedCore drops every entry once its gate is closing.
type gatedCore struct {
	zapcore.Core
	gate *closingGate
}

func (c *gatedCore) With(f []zapcore.Field) zapcore.Core {
	return &gatedCore{Core: c.Core.With(f), gate: c.gate}
}

func (c *gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.gate.closing.Load() || e.Message == benignStartupError {
		return ce
	}
	return c.Core.Check(e, ce)
}

func parseURLs(ss []string, def string) ([]url.URL, error) {
	if len(ss) == 0 {
		if def == "" {
			return nil, errors.New("no urls")
		}
		ss = []string{def}
	}
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		for _, p := range strings.Split(s, ",") {
			u, err := url.Parse(strings.TrimSpace(p))
			if err != nil {
				return nil, fmt.Errorf("parsing %q: %w", p, err)
			}
			out = append(out, *u)
		}
	}
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Endpoints returns the client URLs the server is listening on, with the
// ports actually bound.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Close stops the server and waits until it has released the data dir.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.gate.closing.Store(true)
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
	})
}

// InProcessClient returns a client that calls the member's gRPC service
// implementations directly instead of going through a loopback socket:
// no gRPC framing, HTTP/2 or TCP on either side. The member keeps serving
// its client URLs for other processes.
func (s *Server) InProcessClient() *clientv3.Client { return v3client.New(s.etcd.Server) }

// InProcessKV returns the member's KV API as InProcessClient's KV calls
// it (v3client's adapter over the quota-checking KV server), for callers
// that build their requests themselves (etcd3.Config.KV) instead of
// through clientv3's Op and Cmp values. Its Txn hands a single-compare
// transaction of at most one plain operation per branch (the storage
// layer's compare-and-swap) to the member directly: see directTxnKV.
func (s *Server) InProcessKV() pb.KVClient {
	return newDirectTxnKV(s.etcd.Server)
}

// Err delivers fatal errors from the running server.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// NewClient returns a client for the given endpoints (an embedded server's
// Endpoints or an external cluster). tlsConfig may be nil for plain HTTP.
func NewClient(endpoints []string, tlsConfig *tls.Config) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("creating etcd client: no endpoints")
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConfig,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		// Objects are at most storage.MaxObjectSize; lists can be far
		// larger than grpc's 4 MiB default.
		MaxCallRecvMsgSize: 1 << 30,
		MaxCallSendMsgSize: 4 << 20,
		Logger:             zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating etcd client: %w", err)
	}
	return c, nil
}
