package server

import (
	"errors"
	"sync"

	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/apiserver/inprocess"
	"skiff.dev/skiff/internal/pki"
)

// inProcess holds the one in-process transport of a Server.
type inProcess struct {
	once sync.Once
	t    *inprocess.Transport
	err  error
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

// close stops the in-process transport, if one was made: requests in
// flight are cancelled, later ones fail.
func (p *inProcess) close() {
	p.once.Do(func() { p.err = errors.New("in-process client config: the server stopped") })
	if p.t != nil {
		p.t.Close()
	}
}
