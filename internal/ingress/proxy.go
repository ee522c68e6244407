package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
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

var (
	_ http.Handler      = (*Proxy)(nil)
	_ http.RoundTripper = (*retryTransport)(nil)
)

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
		Transport:    &retryTransport{base: transport, maxAttempts: cfg.MaxAttempts, log: logger},
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
	// of retryTransport on connection failures.
	n := len(b.Endpoints)
	start := int(p.next.Add(1) % uint64(n))
	order := make([]string, 0, n)
	order = append(order, b.Endpoints[start:]...)
	order = append(order, b.Endpoints[:start]...)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointsKey{}, order)))
}

// dialError marks a failure to connect, the only failure retried on
// another endpoint (nothing of the request has been sent).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	c, err := p.cfg.Dial(dctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// retryTransport sends a request to the endpoints of its backend in their
// round-robin order, moving to the next one only when connecting fails.
// Each attempt targets the endpoint's own address, so pooled keep-alive
// connections always belong to the endpoint they are filed under.
type retryTransport struct {
	base        http.RoundTripper
	maxAttempts int
	log         *slog.Logger
}

func (rt *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	eps, _ := req.Context().Value(endpointsKey{}).([]string)
	if len(eps) == 0 {
		return rt.base.RoundTrip(req)
	}
	// The transport closes the body when an attempt fails; a failed
	// connect has read none of it, so later attempts may send it, and
	// only the last close is real.
	body := req.Body
	if body != nil && body != http.NoBody {
		req = shallowWithBody(req, &keepOpen{body})
	}
	var errs []error
	for i, ep := range eps {
		if i >= rt.maxAttempts {
			break
		}
		r := *req
		u := *req.URL
		u.Host = ep
		r.URL = &u
		resp, err := rt.base.RoundTrip(&r)
		var de *dialError
		if err == nil || !errors.As(err, &de) || req.Context().Err() != nil {
			if err != nil && body != nil {
				body.Close()
			}
			if err == nil && i > 0 {
				rt.log.Debug("ingress backend reached after retrying", "endpoint", ep, "attempt", i+1)
			}
			return resp, err
		}
		errs = append(errs, err)
	}
	if body != nil {
		body.Close()
	}
	return nil, fmt.Errorf("connecting to backend (%d attempt(s)): %w", len(errs), errors.Join(errs...))
}

func shallowWithBody(req *http.Request, body io.ReadCloser) *http.Request {
	r := *req
	r.Body = body
	return &r
}

// keepOpen ignores Close, so a retry can still send the body.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
		return
	}
	p.log.Warn("ingress backend failed", "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "502 bad gateway: "+err.Error(), http.StatusBadGateway)
}
