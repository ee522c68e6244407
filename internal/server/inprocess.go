package server

import (
	"errors"
	"sync"

	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/apiserver/inprocess"
	"skiff.dev/skiff/internal/apiserver/localwatch"
	"skiff.dev/skiff/internal/pki"
)

// inProcess holds the one in-process transport of a Server and its local
// list/watch source.
type inProcess struct {
	once sync.Once
	t    *inprocess.Transport
	err  error

	local  *localwatch.Source
	closed bool
	mu     sync.Mutex
}

// InProcessUser is who in-process components act as: the same identity the
// admin client certificate of LoopbackConfig carries.
func InProcessUser() *authn.User {
	return &authn.User{Name: pki.AdminUser, Groups: []string{pki.AdminGroup, authn.AuthenticatedGroup}}
}

// InProcessConfig is a client config for components running in this
// process (controller manager, scheduler): its Transport calls the API
// server's handler directly (internal/apiserver/inprocess), as
// InProcessUser, through the whole filter chain but without TLS, HTTP/2
// or sockets. Host is the loopback URL, for logs and for code that only
// reads it. Use LoopbackConfig for whatever needs a real connection or
// certificates (the in-process agent, exec/port-forward, kubectl). Valid
// once Run has started serving.
func (s *Server) InProcessConfig() (*rest.Config, error) {
	if s.api == nil {
		return nil, errors.New("in-process client config: the API server is not built yet")
	}
	s.inproc.once.Do(func() {
		s.inproc.t, s.inproc.err = inprocess.New(s.api.Handler(), InProcessUser())
	})
	if s.inproc.err != nil {
		return nil, s.inproc.err
	}
	return &rest.Config{
		Host:      s.loopbackURL,
		Transport: s.inproc.t,
		QPS:       -1, Burst: 1000,
		UserAgent: "skiff",
	}, nil
}

// LocalWatch is the source of in-process informers that list and watch
// this server's stores directly (internal/apiserver/localwatch: objects
// deep-copied from the watch cache instead of encoded by the server and
// decoded by client-go, and not counted in apiserver_request_total). Its
// watches end when the server stops, as the in-process transport's
// streams do. Valid once Run has started serving.
func (s *Server) LocalWatch() (*localwatch.Source, error) {
	if s.api == nil {
		return nil, errors.New("in-process list/watch source: the API server is not built yet")
	}
	p := &s.inproc
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local == nil {
		p.local = localwatch.New(s.stores)
		if p.closed {
			p.local.Close()
		}
	}
	return p.local, nil
}

// close stops the in-process transport and the local list/watch source,
// if they were made: requests and watches in flight end, later ones fail.
func (p *inProcess) close() {
	p.once.Do(func() { p.err = errors.New("in-process client config: the server stopped") })
	if p.t != nil {
		p.t.Close()
	}
	p.mu.Lock()
	p.closed = true
	if p.local != nil {
		p.local.Close()
	}
	p.mu.Unlock()
}
