package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/utils/clock"
)

// Node client certificate rotation, as upstream's kubelet certificate
// manager: a certificate is renewed at a random point between 70% and 90%
// of its lifetime through a new CSR authenticated with the certificate
// itself (the server's signer approves a node renewing its own name), or
// with the join token once it has expired. Every client the agent builds
// shares one transport whose TLS handshakes take the certificate from a
// holder; a rotation swaps the holder and closes the connections dialled
// so far, so requests reconnect with the new certificate before the old
// one lapses (the API server checks expiry on every request).

// Rotation points, as fractions of a certificate's lifetime.
const (
	rotateFrom   = 0.7
	rotateJitter = 0.2
)

// Retry delays of a failed renewal.
const (
	renewRetryMin = 2 * time.Second
	renewRetryMax = 5 * time.Minute
)

// minRotationGap spaces rotations whose new certificate is due at once (a
// signer or CA about to expire caps every new certificate's NotAfter), so
// they never turn into a loop of CSRs.
const minRotationGap = 5 * time.Second

// nodeCert is one node client certificate with its key.
type nodeCert struct {
	certPEM, keyPEM []byte
	tls             *tls.Certificate // Leaf is set
	// obtained is when the agent received it. The signer backdates
	// NotBefore (clock skew between machines), so the lifetime that counts
	// for rotation starts at the later of the two.
	obtained time.Time
}

// parseNodeCert pairs certPEM with keyPEM (they must match).
func parseNodeCert(certPEM, keyPEM []byte, obtained time.Time) (*nodeCert, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading node certificate: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing node certificate: %w", err)
		}
	}
	return &nodeCert{certPEM: certPEM, keyPEM: keyPEM, tls: &pair, obtained: obtained}, nil
}

// certHolder is the node's current client certificate, read by every TLS
// handshake of the agent's API clients.
type certHolder struct{ cur atomic.Pointer[nodeCert] }

func (h *certHolder) current() *nodeCert { return h.cur.Load() }
func (h *certHolder) set(c *nodeCert)    { h.cur.Store(c) }

// clientCert is the transport's certificate callback.
func (h *certHolder) clientCert() (*tls.Certificate, error) {
	c := h.cur.Load()
	if c == nil {
		return nil, errors.New("no node client certificate yet")
	}
	return c.tls, nil
}

// rotationDeadline is when c should be renewed: r (in [0,1)) picks a point
// between 70% and 90% of its lifetime.
func rotationDeadline(c *nodeCert, r float64) time.Time {
	start := c.tls.Leaf.NotBefore
	if c.obtained.After(start) {
		start = c.obtained
	}
	life := c.tls.Leaf.NotAfter.Sub(start)
	if life <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(life) * (rotateFrom + rotateJitter*r)).Round(time.Millisecond))
}

// rotatingClient is a shared round tripper presenting the holder's
// certificate, and the dialer whose connections a rotation closes.
type rotatingClient struct {
	rt     http.RoundTripper
	dialer *connrotation.Dialer
}

// newRotatingClient builds the transport for an API server that base
// describes (its CA and server name; its credentials are ignored).
func newRotatingClient(base *rest.Config, h *certHolder) (*rotatingClient, error) {
	d := connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	rt, err := transport.New(&transport.Config{
		TLS: transport.TLSConfig{
			CAData: base.TLSClientConfig.CAData, CAFile: base.TLSClientConfig.CAFile,
			ServerName: base.TLSClientConfig.ServerName, NextProtos: base.TLSClientConfig.NextProtos,
			GetCertHolder: &transport.GetCertHolder{GetCert: h.clientCert},
		},
		DialHolder: &transport.DialHolder{Dial: d.DialContext},
	})
	if err != nil {
		return nil, fmt.Errorf("building the node's rotating transport: %w", err)
	}
	return &rotatingClient{rt: rt, dialer: d}, nil
}

// wrap makes rc's clients use the rotating transport. client-go builds a
// transport from rc's own TLS settings first (rc keeps its CA and the
// certificate it started with, for readers of the config); WrapTransport
// replaces it with the shared one, under the auth and user-agent layers.
func (rc *rotatingClient) wrap(cfg *rest.Config) {
	cfg.WrapTransport = func(http.RoundTripper) http.RoundTripper { return rc.rt }
}

// certRotator renews the holder's certificate when it is due.
type certRotator struct {
	holder *certHolder
	clock  clock.Clock
	rand   func() float64
	// renew obtains and saves a new certificate, authenticating with the
	// current one or, with bootstrap, with the join token.
	renew func(ctx context.Context, bootstrap bool) (*nodeCert, error)
	// rotated runs after the holder changed (closes old connections).
	rotated func()
	log     *slog.Logger
}

// run renews certificates until ctx ends.
func (r *certRotator) run(ctx context.Context) {
	for rotated := false; ; rotated = true {
		cur := r.holder.current()
		deadline := rotationDeadline(cur, r.rand())
		r.log.Info("node certificate rotation scheduled", "expires", cur.tls.Leaf.NotAfter, "rotateAt", deadline)
		wait := deadline.Sub(r.clock.Now())
		if rotated && wait < minRotationGap {
			wait = minRotationGap
		}
		if !r.sleep(ctx, wait) {
			return
		}
		next, ok := r.renewUntilDone(ctx, cur)
		if !ok {
			return
		}
		r.holder.set(next)
		r.rotated()
		r.log.Info("rotated node certificate", "serial", next.tls.Leaf.SerialNumber.String(), "expires", next.tls.Leaf.NotAfter)
	}
}

// renewUntilDone renews cur, retrying with back-off; the join token is
// used once cur has expired or the server refused it.
func (r *certRotator) renewUntilDone(ctx context.Context, cur *nodeCert) (*nodeCert, bool) {
	delay := renewRetryMin
	refused := false
	for {
		bootstrap := refused || !r.clock.Now().Before(cur.tls.Leaf.NotAfter)
		next, err := r.renew(ctx, bootstrap)
		if err == nil {
			return next, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		refused = refused || apierrors.IsUnauthorized(err)
		r.log.Warn("renewing node certificate", "err", err, "withJoinToken", bootstrap, "retryIn", delay)
		if !r.sleep(ctx, delay) {
			return nil, false
		}
		delay = min(2*delay, renewRetryMax)
	}
}

// sleep waits d on the injected clock; false when ctx ended first.
func (r *certRotator) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
