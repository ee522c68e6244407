package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// ProxyConfig tunes the reverse proxy. Zero values take the defaults noted.
type ProxyConfig struct {
	// MaxAttempts bounds the endpoints dialled for one request (3).
	MaxAttempts int
	// DialTimeout bounds one connection attempt (2s).
	DialTimeout time.Duration
	// Dial, if set, replaces the TCP dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy routes requests with the current Table.
type Proxy struct {
	cfg   ProxyConfig
	table func() *Table
	rp    *httputil.ReverseProxy
	next  atomic.Uint64
	log   *slog.Logger
}

type endpointsKey struct{}

// NewProxy returns a handler that reads the routing table from table on
// every request.
func NewProxy(cfg ProxyConfig, table func() *Table, logger *slog.Logger) *Proxy {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	p := &Proxy{cfg: cfg, table: table, log: logger}
	transport := &http.Transport{
		DialContext:           p.dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Backends speak plain HTTP/1.1; Upgrade needs HTTP/1.1 anyway.
		ForceAttemptHTTP2: false,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			eps, _ := pr.In.Context().Value(endpointsKey{}).([]string)
			pr.Out.URL.Scheme = "http"
			if len(eps) > 0 {
				pr.Out.URL.Host = eps[0]
			}
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:    transport,
		ErrorHandler: p.proxyError,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return p
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.table().Match(r.Host, r.URL.Path)
	if b == nil {
		http.Error(w, "404 page not found: no ingress rule matches "+r.Host+r.URL.Path, http.StatusNotFound)
		return
	}
	if len(b.Endpoints) == 0 {
		http.Error(w, fmt.Sprintf("503 service unavailable: %s: %s", b, b.Reason), http.StatusServiceUnavailable)
		return
	}
	// Round robin over the endpoints; the order is also the retry order
	// the dialer walks on connection failures.
	n := len(b.Endpoints)
	start := int(p.next.Add(1) % uint64(n))
	order := make([]string, 0, n)
	order = append(order, b.Endpoints[start:]...)
	order = append(order, b.Endpoints[:start]...)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointsKey{}, order)))
}

// dial connects to the first reachable endpoint of the request's backend,
// in its round-robin order. The transport pools the connection under the
// first endpoint's address; that is harmless, as every endpoint in the
// list serves the same backend.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	eps, _ := ctx.Value(endpointsKey{}).([]string)
	if len(eps) == 0 {
		eps = []string{addr}
	}
	var errs []error
	for i, ep := range eps {
		if i >= p.cfg.MaxAttempts {
			break
		}
		dctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		c, err := p.cfg.Dial(dctx, network, ep)
		cancel()
		if err == nil {
			if i > 0 {
				p.log.Debug("ingress backend retried", "endpoint", ep, "attempt", i+1)
			}
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connecting to backend (%d attempt(s)): %w", len(errs), errors.Join(errs...))
}

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
		return
	}
	p.log.Warn("ingress backend failed", "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "502 bad gateway: "+err.Error(), http.StatusBadGateway)
}
