// Package inprocess is an http.RoundTripper that serves a client's requests
// by calling an http.Handler in the same process: no sockets, no TLS, no
// HTTP/2 framing. `skiff server` gives it to the components it runs beside
// the API server (controller manager, scheduler), whose client-go traffic
// then costs only the handler's own work.
//
// Contract:
//   - Every request goes through the whole handler it is given (for the API
//     server: recover, metrics, authn, in-flight limit, router), exactly as
//     a request read from the network would.
//   - The request carries the Transport's user in its context (UserFrom);
//     the API server's authentication filter trusts that value and nothing
//     else about the request. Only this package can set it, and a request
//     read from the network never has it.
//   - The response is handed to the client as soon as the handler has
//     flushed, written more than it would buffer, or returned, as net/http
//     would send it. A response the handler finished without flushing is
//     returned whole (no goroutine hand-off per read); one it flushed (a
//     watch, a large list) streams through a bounded in-memory pipe: the
//     client sees each Flush at once, and a handler more than
//     maxPipeBuffer ahead of its reader waits, as it would on a socket.
//   - Closing the response body or ending the request's context cancels
//     the handler's context and fails its further writes, so a watch
//     handler returns promptly; RoundTrip returns the context's error if
//     it ends before the response started.
//   - Close is the server stopping: requests in flight have their
//     contexts cancelled (a stream the handler had not finished ends with
//     io.ErrUnexpectedEOF) and later ones fail with ErrClosed, as a
//     stopping server closes its connections.
//   - Protocol upgrades (exec, attach, port-forward over SPDY or
//     WebSockets) need a real connection and are refused.
package inprocess

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"skiff.dev/skiff/internal/apiserver/authn"
)

const (
	// flushThreshold is how much a handler may write before its bytes go to
	// the reader without a Flush (net/http's response buffer is 4 KiB; a
	// larger one means fewer reader wake-ups for the same bytes).
	flushThreshold = 32 << 10
	// maxUnflushedResponse is how much of a response that has not been
	// flushed is held before it is handed over as a stream: a large list
	// then flows through the pipe instead of being held twice.
	maxUnflushedResponse = 256 << 10
	// maxPipeBuffer bounds what a streaming handler may be ahead of its
	// reader (HTTP/2's per-stream window in client-go's transport is 4 MiB).
	maxPipeBuffer = 4 << 20
)

// ErrUpgradeNotSupported is returned for requests asking for a protocol
// upgrade, which needs a real connection.
var ErrUpgradeNotSupported = errors.New("in-process transport: protocol upgrades (exec, attach, port-forward) are not supported")

// ErrClosed is returned for requests after Close.
var ErrClosed = errors.New("in-process transport: the server stopped")

var errWriteAfterReturn = errors.New("in-process transport: write after the handler returned")

// errBodyClosed is what a handler's write gets after the client closed
// the response body.
var errBodyClosed = errors.New("in-process transport: response body closed by the client")

type userKey struct{}

// UserFrom returns the user a request made through a Transport was sent
// as. Only this package sets the value, so ok means the request came from
// code in this process through a Transport.
func UserFrom(ctx context.Context) (*authn.User, bool) {
	u, ok := ctx.Value(userKey{}).(*authn.User)
	return u, ok && u != nil
}

// Transport serves requests with a handler in this process, as user.
type Transport struct {
	handler http.Handler
	user    *authn.User
	// closed ends with Close.
	closed context.Context
	close  context.CancelFunc
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport calling h for every request, authenticated as
// user (shared between requests: it must not be modified).
func New(h http.Handler, user *authn.User) (*Transport, error) {
	if h == nil {
		return nil, errors.New("in-process transport: handler is required")
	}
	if user == nil || user.Name == "" {
		return nil, errors.New("in-process transport: a named user is required")
	}
	closed, close := context.WithCancel(context.Background())
	return &Transport{handler: h, user: user, closed: closed, close: close}, nil
}

// Close cancels the requests in flight and fails later ones with
// ErrClosed.
func (t *Transport) Close() { t.close() }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("in-process transport: request has no URL")
	}
	if req.Header.Get("Upgrade") != "" {
		closeBody(req)
		return nil, ErrUpgradeNotSupported
	}
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	if t.closed.Err() != nil {
		closeBody(req)
		return nil, ErrClosed
	}
	sctx, cancel := context.WithCancel(context.WithValue(ctx, userKey{}, t.user))
	w := &responseWriter{
		t:         t,
		clientReq: req,
		clientCtx: ctx,
		cancel:    cancel,
		unlink:    context.AfterFunc(t.closed, cancel),
		header:    http.Header{},
		head:      req.Method == http.MethodHead,
		ready:     make(chan struct{}),
	}
	go w.serve(t.handler, serverRequest(req, sctx))

	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		// The handler sees the same cancellation through its context (and
		// may have answered because of it). A response it committed at
		// this very moment has no reader: release it.
		select {
		case <-w.ready:
			if w.resp != nil {
				w.resp.Body.Close()
			}
		default:
		}
		return nil, err
	}
	if w.err != nil {
		return nil, w.err
	}
	return w.resp, nil
}

// serverRequest is req as a server handler would see it after reading it
// from a connection: origin-form URL, Host, RequestURI, a non-nil body.
func serverRequest(req *http.Request, ctx context.Context) *http.Request {
	r := req.Clone(ctx)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	r.Host = host
	r.URL.Scheme, r.URL.Host, r.URL.User = "", "", nil
	r.RequestURI = req.URL.RequestURI()
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.RemoteAddr = "in-process"
	r.Close = false
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		r.Body, r.ContentLength = http.NoBody, 0
	case req.ContentLength == 0:
		// A client request's zero length with a body means "unknown".
		r.ContentLength = -1
	}
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// responseWriter is the handler's http.ResponseWriter. Its fields are the
// handler goroutine's, except resp and err, which RoundTrip reads after
// ready is closed.
type responseWriter struct {
	t         *Transport
	clientReq *http.Request
	clientCtx context.Context
	cancel    context.CancelFunc // the handler's context
	unlink    func() bool        // stops Close from cancelling it

	header      http.Header
	head        bool
	code        int
	wroteHeader bool
	noBody      bool // status without a body (1xx, 204, 304)
	sniff       bool // no Content-Type: detect one from the body
	sent        http.Header
	pending     []byte // written, not yet handed to the reader

	committed bool
	finished  bool          // the handler returned
	ready     chan struct{} // closed once resp or err is set
	resp      *http.Response
	err       error
	pipe      *pipe // set when the response streams
}

var _ http.Flusher = (*responseWriter)(nil)

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return // informational: net/http sends it ahead; clients here ignore it
	}
	w.wroteHeader = true
	w.code = code
	w.noBody = code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	// The headers go out now, as on a connection: later changes to the
	// map are not seen by the client. Without a Content-Type, net/http
	// sniffs one from the first bytes of the body (see response).
	w.sent = w.header.Clone()
	_, haveType := w.sent["Content-Type"]
	w.sniff = !haveType && w.sent.Get("Transfer-Encoding") == "" && !w.noBody
	w.sent.Del("Transfer-Encoding")
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.finished {
		return 0, errWriteAfterReturn
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.head {
		if w.sniff && len(p) > 0 {
			w.sent.Set("Content-Type", http.DetectContentType(p))
			w.sniff = false
		}
		return len(p), nil
	}
	if w.pipe != nil && w.pipe.readerGone() != nil {
		return 0, w.pipe.readerGone()
	}
	w.pending = append(w.pending, p...)
	switch {
	case w.committed && len(w.pending) >= flushThreshold:
		if err := w.push(); err != nil {
			return 0, err
		}
	case !w.committed && len(w.pending) >= maxUnflushedResponse:
		w.commitStream()
		if err := w.push(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush hands what was written to the reader at once.
func (w *responseWriter) Flush() {
	if w.finished {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commitStream()
	}
	_ = w.push()
}

// push moves pending into the pipe, waiting for room.
func (w *responseWriter) push() error {
	if len(w.pending) == 0 {
		return nil
	}
	err := w.pipe.write(w.pending)
	w.pending = w.pending[:0]
	return err
}

// commitStream hands RoundTrip a response whose body is a pipe the
// handler keeps writing into.
func (w *responseWriter) commitStream() {
	p := newPipe()
	w.pipe = p
	w.committed = true
	ctx, cancel := w.clientCtx, w.cancel
	// The client ending the request's context ends the stream as closing
	// the body does.
	stop := context.AfterFunc(ctx, func() {
		p.closeRead(ctx.Err())
		cancel()
	})
	w.resp = w.response(&pipeBody{p: p, cancel: cancel, stop: stop}, -1)
	close(w.ready)
}

func (w *responseWriter) response(body io.ReadCloser, length int64) *http.Response {
	code := w.code
	hdr := w.sent
	if w.sniff && len(w.pending) > 0 {
		hdr.Set("Content-Type", http.DetectContentType(w.pending))
	}
	if w.head {
		body, length = http.NoBody, -1
		if n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64); err == nil {
			length = n
		}
	}
	return &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          body,
		ContentLength: length,
		Request:       w.clientReq,
	}
}

// serve runs the handler and finishes the response when it returns.
func (w *responseWriter) serve(h http.Handler, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			// net/http would drop the connection; the client gets an error
			// instead of a truncated response that looks complete.
			w.finish(fmt.Errorf("in-process transport: handler for %s %s panicked: %v", r.Method, r.URL.Path, v))
			return
		}
		w.finish(nil)
	}()
	h.ServeHTTP(w, r)
}

func (w *responseWriter) finish(failed error) {
	defer closeBody(w.clientReq)
	w.unlink()
	// The writer is the handler's until it returns (net/http's rule);
	// a stray later write gets an error rather than a torn response.
	w.finished = true
	if failed == nil && w.t.closed.Err() != nil {
		// The handler may have stopped early because the server stopped.
		failed = ErrClosed
	}
	if !w.committed {
		// The handler's context ends with it, as in net/http.
		w.cancel()
		w.committed = true
		if failed != nil {
			w.err = failed
		} else {
			if !w.wroteHeader {
				w.WriteHeader(http.StatusOK)
			}
			body := &bytesBody{}
			body.Reset(w.pending)
			w.resp = w.response(body, int64(len(w.pending)))
		}
		close(w.ready)
		return
	}
	if err := w.clientCtx.Err(); err != nil {
		// The handler ended because the client's context did: the reader
		// gets that, not a clean end of stream (the AfterFunc may not
		// have run yet).
		w.pipe.closeRead(err)
	}
	if failed == nil {
		failed = w.push()
	}
	if failed == nil {
		failed = io.EOF
	} else {
		failed = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, failed)
	}
	w.pipe.closeWrite(failed)
	w.cancel()
}

// bytesBody is a finished response's body (bytes.Reader's WriteTo lets
// io.Copy skip a buffer).
type bytesBody struct{ bytes.Reader }

func (b *bytesBody) Close() error { return nil }

// pipeBody is a streaming response's body.
type pipeBody struct {
	p      *pipe
	cancel context.CancelFunc
	stop   func() bool
	once   sync.Once
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.p.read(p) }

// Close ends the handler's context and fails its further writes.
func (b *pipeBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.p.closeRead(errBodyClosed)
		b.cancel()
	})
	return nil
}

// pipe is a bounded in-memory byte stream from one writer (the handler)
// to one reader (the client).
type pipe struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	off  int   // read position in buf
	werr error // the writer is done: io.EOF or why it failed
	rerr error // the reader is gone: why
}

func newPipe() *pipe {
	p := &pipe{}
	p.cond.L = &p.mu
	return p
}

func (p *pipe) write(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.rerr == nil && len(p.buf)-p.off >= maxPipeBuffer {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return p.rerr
	}
	if p.off == len(p.buf) {
		p.buf, p.off = p.buf[:0], 0
	} else if p.off > 0 && len(p.buf)+len(b) > cap(p.buf) {
		n := copy(p.buf, p.buf[p.off:])
		p.buf, p.off = p.buf[:n], 0
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return nil
}

func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.rerr == nil && p.off == len(p.buf) && p.werr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.off < len(p.buf) {
		n := copy(b, p.buf[p.off:])
		p.off += n
		p.cond.Broadcast()
		return n, nil
	}
	return 0, p.werr
}

func (p *pipe) closeWrite(err error) {
	p.mu.Lock()
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipe) readerGone() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rerr
}
