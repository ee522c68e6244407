package ingress

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

func parseLeaf(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// named is a backend answering "name host path" with the request's Host
// and X-Forwarded-For echoed in headers.
func named(t *testing.T, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// staticTable routes one host's "/" to fixed endpoints.
func staticTable(eps ...string) *Table {
	b := &Backend{Namespace: "default", Service: "svc", Port: "80", Endpoints: eps}
	if len(eps) == 0 {
		b.Reason = "no ready endpoints"
	}
	return &Table{exact: map[string]*routes{"app.test": {prefix: map[string]*Backend{"/": b}}}}
}

func get(t *testing.T, h http.Handler, host, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestProxyRoutesAndStatusCodes(t *testing.T) {
	a := named(t, "a")
	tab := staticTable(strings.TrimPrefix(a.URL, "http://"))
	tab.exact["empty.test"] = &routes{prefix: map[string]*Backend{"/": {Service: "empty", Reason: "no ready endpoints"}}}
	p := NewProxy(ProxyConfig{}, func() *Table { return tab }, quiet)

	w := get(t, p, "app.test", "/x/y")
	if w.Code != 200 || w.Body.String() != "a /x/y" {
		t.Fatalf("proxied: %d %q", w.Code, w.Body.String())
	}
	if h := w.Header().Get("X-Seen-Host"); h != "app.test" {
		t.Errorf("backend saw Host %q, want the client's app.test", h)
	}
	if f := w.Header().Get("X-Seen-Forwarded-For"); f == "" {
		t.Error("backend saw no X-Forwarded-For")
	}
	if w := get(t, p, "other.test", "/"); w.Code != http.StatusNotFound {
		t.Errorf("no rule: %d, want 404", w.Code)
	}
	if w := get(t, p, "empty.test", "/"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no ready endpoints") {
		t.Errorf("no endpoints: %d %q, want 503 saying why", w.Code, w.Body.String())
	}
}

func TestProxyRetriesOnConnectionFailure(t *testing.T) {
	live := named(t, "live")
	dead1, dead2 := deadAddr(t), deadAddr(t)
	liveAddr := strings.TrimPrefix(live.URL, "http://")
	tab := staticTable(dead1, liveAddr, dead2)
	p := NewProxy(ProxyConfig{MaxAttempts: 3}, func() *Table { return tab }, quiet)
	// Every start position of the round robin reaches the live endpoint
	// within three attempts.
	for i := 0; i < 9; i++ {
		if w := get(t, p, "app.test", "/"); w.Code != 200 {
			t.Fatalf("request %d: %d %q, want 200 after retrying", i, w.Code, w.Body.String())
		}
	}
	// With one attempt, requests starting at a dead endpoint fail: the
	// retries above are what made them succeed.
	one := NewProxy(ProxyConfig{MaxAttempts: 1}, func() *Table { return tab }, quiet)
	failed := 0
	for i := 0; i < 6; i++ {
		if w := get(t, one, "app.test", "/"); w.Code == http.StatusBadGateway {
			failed++
		}
	}
	if failed == 0 {
		t.Error("with MaxAttempts 1 no request failed; the retry test proves nothing")
	}
	// A request body survives the failed attempts.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}))
	t.Cleanup(echo.Close)
	post := staticTable(deadAddr(t), deadAddr(t), strings.TrimPrefix(echo.URL, "http://"))
	pp := NewProxy(ProxyConfig{}, func() *Table { return post }, quiet)
	for i := 0; i < 3; i++ {
		r := httptest.NewRequest(http.MethodPost, "http://app.test/", strings.NewReader("payload"))
		w := httptest.NewRecorder()
		pp.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.String() != "got payload" {
			t.Errorf("post %d: %d %q, want the body delivered after retries", i, w.Code, w.Body.String())
		}
	}
	// Every endpoint dead: 502 naming the attempts.
	allDead := staticTable(dead1, dead2)
	p = NewProxy(ProxyConfig{}, func() *Table { return allDead }, quiet)
	if w := get(t, p, "app.test", "/"); w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "2 attempt") {
		t.Errorf("all dead: %d %q, want 502 after 2 attempts", w.Code, w.Body.String())
	}
}

func TestProxyRoundRobin(t *testing.T) {
	a, b := named(t, "a"), named(t, "b")
	tab := staticTable(strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://"))
	p := NewProxy(ProxyConfig{}, func() *Table { return tab }, quiet)
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[strings.Fields(get(t, p, "app.test", "/").Body.String())[0]]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("requests per endpoint = %v, want 5 each", seen)
	}
}

// echoUpgrade answers an Upgrade: websocket request with 101 and then
// echoes raw bytes back, upper-cased, until the client closes.
func echoUpgrade(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "expected an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", r.Header.Get("Sec-WebSocket-Key"))
		rw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := rw.Read(buf)
			if err != nil {
				return
			}
			rw.Write([]byte(strings.ToUpper(string(buf[:n]))))
			rw.Flush()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// upgradeThrough dials the proxy at addr (a net.Conn factory), upgrades
// and checks bytes flow both ways several times.
func upgradeThrough(t *testing.T, conn net.Conn, host string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade: %s %v, want 101 websocket", resp.Status, resp.Header)
	}
	for _, msg := range []string{"hello", "second frame", "third"} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("writing %q: %v", msg, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading echo of %q: %v", msg, err)
		}
		if string(got) != strings.ToUpper(msg) {
			t.Fatalf("echo = %q, want %q", got, strings.ToUpper(msg))
		}
	}
}

func TestProxyWebSocketPassThrough(t *testing.T) {
	ws := echoUpgrade(t)
	// A dead first endpoint: the upgrade also goes through the retrying
	// dialer.
	tab := staticTable(deadAddr(t), strings.TrimPrefix(ws.URL, "http://"))
	p := NewProxy(ProxyConfig{}, func() *Table { return tab }, quiet)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	for i := 0; i < 2; i++ { // both round-robin starts
		conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		upgradeThrough(t, conn, "app.test")
		conn.Close()
	}
}

func TestPathTypeDefaultsToPrefixSemantics(t *testing.T) {
	// A path without pathType (not valid through the API, but possible in
	// a hand-built object) is treated as Prefix, never Exact.
	src := newSource()
	src.addService("default", "s", 80, "10.0.0.1")
	ing := ingress("i", 0, map[string][]path{"h": {{prefix, "/p", "s"}}})
	ing.Spec.Rules[0].HTTP.Paths[0].PathType = nil
	if b := Build([]*networkingv1.Ingress{ing}, src, nil).Match("h", "/p/q"); b == nil {
		t.Error("path without pathType did not match as a prefix")
	}
}
