package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/pki"
)

var rotT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// leafOnly is a nodeCert carrying just the validity window.
func leafOnly(notBefore, notAfter, obtained time.Time, serial int64) *nodeCert {
	return &nodeCert{obtained: obtained, tls: &tls.Certificate{Leaf: &x509.Certificate{NotBefore: notBefore, NotAfter: notAfter, SerialNumber: big.NewInt(serial)}}}
}

func TestRotationDeadline(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		c    *nodeCert
		r    float64
		want time.Time
	}{
		{"earliest: 70%", leafOnly(rotT0, rotT0.Add(100*time.Hour), rotT0, 1), 0, rotT0.Add(70 * time.Hour)},
		{"middle: 80%", leafOnly(rotT0, rotT0.Add(100*time.Hour), rotT0, 1), 0.5, rotT0.Add(80 * time.Hour)},
		{"latest: just under 90%", leafOnly(rotT0, rotT0.Add(100*time.Hour), rotT0, 1), 0.999, rotT0.Add(89*time.Hour + 58*time.Minute + 48*time.Second)},
		// The signer backdates NotBefore by an hour; a 100 s certificate
		// received at rotT0 is due at 80 s, not at once.
		{"backdated short certificate", leafOnly(rotT0.Add(-time.Hour), rotT0.Add(100*time.Second), rotT0, 1), 0.5, rotT0.Add(80 * time.Second)},
		// A saved certificate obtained before NotBefore (clock skew): NotBefore counts.
		{"obtained before NotBefore", leafOnly(rotT0, rotT0.Add(year), rotT0.Add(-time.Minute), 1), 0, rotT0.Add(time.Duration(0.7 * float64(year)))},
		{"already expired", leafOnly(rotT0.Add(-time.Hour), rotT0.Add(-time.Minute), rotT0, 1), 0.5, rotT0},
	} {
		if got := rotationDeadline(tc.c, tc.r); !got.Equal(tc.want) {
			t.Errorf("%s: deadline %s, want %s", tc.name, got, tc.want)
		}
	}
}

// signedNodeCert is a real node certificate from ca.
func signedNodeCert(t *testing.T, ca *pki.CA, node string, validity time.Duration) *nodeCert {
	t.Helper()
	csrPEM, keyPEM, err := pki.NewNodeCSR(node)
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := pki.ParseNodeCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignClientCSR(req, validity)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseNodeCert(certPEM, keyPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRotatingClientSwapsCertificate: clients built from the wrapped config
// present the holder's certificate; after a swap, connections dialled
// before keep the old one until the rotation closes them, then the new one
// is presented.
func TestRotatingClientSwapsCertificate(t *testing.T) {
	ca, err := pki.NewCA("test-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	a, b := signedNodeCert(t, ca, "n1", time.Hour), signedNodeCert(t, ca, "n1", time.Hour)
	holder := &certHolder{}
	holder.set(a)
	base := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
	}}
	rot, err := newRotatingClient(base, holder)
	if err != nil {
		t.Fatal(err)
	}
	rc := nodeConfig(base, a.certPEM, a.keyPEM)
	rot.wrap(rc)
	// Two clients built from the config, as the agent builds several.
	var clients []*http.Client
	for range 2 {
		hc, err := rest.HTTPClientFor(rest.CopyConfig(rc))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, hc)
	}
	presented := func(hc *http.Client) string {
		t.Helper()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2 (one long-lived connection)", resp.Proto)
		}
		return string(body)
	}
	serialA, serialB := a.tls.Leaf.SerialNumber.String(), b.tls.Leaf.SerialNumber.String()
	for i, hc := range clients {
		if got := presented(hc); got != serialA {
			t.Fatalf("client %d presented serial %s, want %s", i, got, serialA)
		}
	}
	holder.set(b)
	if got := presented(clients[0]); got != serialA {
		t.Errorf("the open connection presented %s before the rotation closed it; want the old %s", got, serialA)
	}
	rot.dialer.CloseAll()
	for i, hc := range clients {
		if got := presented(hc); got != serialB {
			t.Errorf("after the rotation client %d presented serial %s, want the new %s", i, got, serialB)
		}
	}
}

// renewCall is one renewal the rotator asked for.
type renewCall struct {
	bootstrap bool
	reply     chan renewReply
}

type renewReply struct {
	c   *nodeCert
	err error
}

// TestCertRotatorTiming drives the rotator on a fake clock: no renewal
// before the deadline, renewal with the certificate at it, retries with
// back-off, the join token once the server refused the certificate or it
// expired.
func TestCertRotatorTiming(t *testing.T) {
	clk := testingclock.NewFakeClock(rotT0)
	holder := &certHolder{}
	// 100 s certificate, backdated an hour like the signer's; r=0.5: due at 80 s.
	holder.set(leafOnly(rotT0.Add(-time.Hour), rotT0.Add(100*time.Second), rotT0, 1))
	calls := make(chan renewCall)
	rotated := make(chan struct{}, 10)
	r := &certRotator{
		holder: holder, clock: clk, rand: func() float64 { return 0.5 },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		rotated: func() { rotated <- struct{}{} },
		renew: func(ctx context.Context, bootstrap bool) (*nodeCert, error) {
			c := renewCall{bootstrap: bootstrap, reply: make(chan renewReply)}
			select {
			case calls <- c:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			rep := <-c.reply
			return rep.c, rep.err
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitTimer := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("rotator is not waiting on the clock")
			}
			time.Sleep(time.Millisecond)
		}
	}
	expectCall := func(wantBootstrap bool) renewCall {
		t.Helper()
		select {
		case c := <-calls:
			if c.bootstrap != wantBootstrap {
				t.Fatalf("renewal with join token %v, want %v (clock %s)", c.bootstrap, wantBootstrap, clk.Now().Sub(rotT0))
			}
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no renewal at %s", clk.Now().Sub(rotT0))
		}
		return renewCall{}
	}
	noCall := func() {
		t.Helper()
		select {
		case <-calls:
			t.Fatalf("renewal at %s, before it was due", clk.Now().Sub(rotT0))
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Before the deadline nothing happens.
	waitTimer()
	clk.Step(79 * time.Second)
	noCall()
	// At 80 s it renews with the certificate; the new one is swapped in
	// and old connections are closed.
	clk.Step(time.Second)
	c := expectCall(false)
	second := leafOnly(rotT0.Add(-time.Hour), rotT0.Add(180*time.Second), rotT0.Add(80*time.Second), 2)
	c.reply <- renewReply{c: second}
	select {
	case <-rotated:
	case <-time.After(10 * time.Second):
		t.Fatal("rotation did not close old connections")
	}
	if got := holder.current().tls.Leaf.SerialNumber.Int64(); got != 2 {
		t.Fatalf("holder serves serial %d after the rotation, want 2", got)
	}

	// The second certificate (obtained at 80 s, expiring at 180 s) is due
	// at 160 s. The server refuses it: the retry 2 s later uses the token.
	waitTimer()
	clk.Step(79 * time.Second)
	noCall()
	clk.Step(time.Second)
	c = expectCall(false)
	c.reply <- renewReply{err: apierrors.NewUnauthorized("certificate revoked")}
	waitTimer()
	clk.Step(2 * time.Second)
	c = expectCall(true)
	third := leafOnly(rotT0.Add(-time.Hour), rotT0.Add(262*time.Second), rotT0.Add(162*time.Second), 3)
	c.reply <- renewReply{c: third}
	<-rotated

	// The third (obtained at 162 s, expiring at 262 s) is due at 242 s.
	// Plain failures retry with the certificate 2, 4 and 8 s apart ...
	waitTimer()
	clk.Step(80 * time.Second)
	expectCall(false).reply <- renewReply{err: errors.New("connection refused")}
	for _, d := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		waitTimer()
		clk.Step(d - time.Millisecond)
		noCall()
		clk.Step(time.Millisecond)
		expectCall(false).reply <- renewReply{err: errors.New("connection refused")}
	}
	// ... and 16 s later (272 s) it has expired: the token is used.
	waitTimer()
	clk.Step(16 * time.Second)
	expectCall(true).reply <- renewReply{c: leafOnly(rotT0.Add(-time.Hour), rotT0.Add(time.Hour), rotT0.Add(272*time.Second), 4)}
	<-rotated
	if got := holder.current().tls.Leaf.SerialNumber.Int64(); got != 4 {
		t.Fatalf("holder serves serial %d, want 4", got)
	}
}

// TestCertRotatorSpacesOverdueRenewals: a certificate already due at start
// is renewed at once; a new one that is due at once again (a CA about to
// expire caps it) waits minRotationGap rather than looping.
func TestCertRotatorSpacesOverdueRenewals(t *testing.T) {
	clk := testingclock.NewFakeClock(rotT0)
	holder := &certHolder{}
	holder.set(leafOnly(rotT0.Add(-100*time.Second), rotT0.Add(10*time.Second), rotT0.Add(-100*time.Second), 1))
	calls := make(chan struct{})
	n := int64(1)
	r := &certRotator{
		holder: holder, clock: clk, rand: func() float64 { return 0.5 },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		rotated: func() {},
		renew: func(ctx context.Context, bootstrap bool) (*nodeCert, error) {
			select {
			case calls <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			n++
			now := clk.Now()
			return leafOnly(now.Add(-time.Hour), now.Add(time.Second), now, n), nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	expect := func(want bool) {
		t.Helper()
		wait := 50 * time.Millisecond
		if want {
			wait = 10 * time.Second
		}
		select {
		case <-calls:
			if !want {
				t.Fatalf("renewal at %s, want none yet", clk.Now().Sub(rotT0))
			}
		case <-time.After(wait):
			if want {
				t.Fatalf("no renewal at %s", clk.Now().Sub(rotT0))
			}
		}
	}
	expect(true) // overdue at start: at once, no clock step
	for range 3 {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(minRotationGap - 100*time.Millisecond)
		expect(false)
		clk.Step(100 * time.Millisecond)
		expect(true)
	}
}

// TestLoadNodeCert: a saved certificate is reused while it is this node's,
// from this CA and unexpired, even when due for rotation; a rotation cut
// between its renames is completed.
func TestLoadNodeCert(t *testing.T) {
	ca, err := pki.NewCA("test-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newAgent := func(node string, now time.Time) *Agent {
		a, err := New(Config{DataDir: dir(t), NodeName: node, NodeIP: "192.0.2.1", Server: "https://192.0.2.2:6443", Token: "x"},
			Deps{Clock: testingclock.NewFakeClock(now), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(a.Dir(), 0o700); err != nil {
			t.Fatal(err)
		}
		return a
	}
	save := func(a *Agent, c *nodeCert) {
		t.Helper()
		if err := os.WriteFile(a.NodeCertPath(), c.certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.nodeKeyPath(), c.keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caPEM := ca.CertPEM
	c := signedNodeCert(t, ca, "n1", 10*time.Minute)

	a := newAgent("n1", time.Now().Add(9*time.Minute)) // 90% of its life gone: still used
	save(a, c)
	got, err := a.loadNodeCert(caPEM)
	if err != nil || got.tls.Leaf.SerialNumber.Cmp(c.tls.Leaf.SerialNumber) != 0 {
		t.Fatalf("certificate due for rotation: %v, want it reused", err)
	}
	for _, tc := range []struct {
		name string
		a    *Agent
		ca   []byte
		want string
	}{
		{"expired", newAgent("n1", time.Now().Add(11*time.Minute)), caPEM, "expired"},
		{"another node", newAgent("n2", time.Now()), caPEM, `not "system:node:n2"`},
		{"another ca", newAgent("n1", time.Now()), other.CertPEM, "unknown authority"},
	} {
		save(tc.a, c)
		if _, err := tc.a.loadNodeCert(tc.ca); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}

	// Cut between the renames: the new key is in place, the new
	// certificate still under its .next name.
	a = newAgent("n1", time.Now())
	save(a, c)
	d := signedNodeCert(t, ca, "n1", 10*time.Minute)
	if err := os.WriteFile(a.nodeKeyPath(), d.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.NodeCertPath()+nextSuffix, d.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = a.loadNodeCert(caPEM)
	if err != nil || got.tls.Leaf.SerialNumber.Cmp(d.tls.Leaf.SerialNumber) != 0 {
		t.Fatalf("interrupted rotation: %v, want the new certificate", err)
	}
	if b, _ := os.ReadFile(a.NodeCertPath()); string(b) != string(d.certPEM) {
		t.Error("the new certificate was not renamed into place")
	}
	if _, err := os.Stat(a.NodeCertPath() + nextSuffix); !os.IsNotExist(err) {
		t.Errorf(".next file left behind: %v", err)
	}
}

// dir is a fresh data dir.
func dir(t *testing.T) string { return filepath.Join(t.TempDir(), "data") }
