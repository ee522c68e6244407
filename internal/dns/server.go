package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// ListenAddrs are host:port pairs served over both UDP and TCP, e.g.
	// "10.43.0.10:53". Required. Port 0 picks one (tests).
	ListenAddrs []string
	Domain      string        // "cluster.local"
	TTL         time.Duration // 5s, for every cluster record
	// Upstreams are resolvers for names outside the cluster, as ip or
	// ip:port; when empty they are read from ResolvConf.
	Upstreams       []string
	ResolvConf      string        // "/etc/resolv.conf"
	UpstreamTimeout time.Duration // 2s per upstream attempt
	CacheSize       int           // 10000 upstream answers; negative disables the cache
	// NameserverIPs are ns.dns.<domain>'s addresses; by default those of
	// kube-system/kube-dns.
	NameserverIPs []netip.Addr
	MinSyncPeriod time.Duration // 10ms: informer changes within it share one index rebuild
	// UDPWorkers is the number of SO_REUSEPORT UDP sockets per listen
	// address, each with one reader batching with recvmmsg/sendmmsg
	// (default GOMAXPROCS).
	UDPWorkers int
	Clock      clock.PassiveClock
	// Metrics, if set, receives the server's collectors.
	Metrics prometheus.Registerer
}

// Server answers DNS for the cluster. Create it with New, serve with Run.
type Server struct {
	cfg     Config
	zone    string
	log     *slog.Logger
	metrics *metrics
	fwd     *forwarder
	index   atomic.Pointer[Index]

	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	signal   chan struct{}

	slow  chan struct{} // bounds goroutines answering UDP off the fast path
	ready chan struct{}
	mu    sync.Mutex
	udp   []net.Addr
	tcp   []net.Addr
	nudp  int // UDP sockets, all addresses
}

var _ mdns.Handler = (*Server)(nil)

// New builds a server whose records come from factory's Service,
// EndpointSlice and Pod informers. Run starts the factory (Start is
// idempotent), so it may or may not have been started already.
func New(cfg Config, factory informers.SharedInformerFactory, logger *slog.Logger) (*Server, error) {
	if len(cfg.ListenAddrs) == 0 {
		return nil, errors.New("dns server needs at least one listen address")
	}
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	if _, ok := mdns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("cluster domain %q is not a domain name", cfg.Domain)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = 10 * time.Millisecond
	}
	if cfg.UDPWorkers == 0 {
		cfg.UDPWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	ups, err := upstreams(cfg)
	if err != nil {
		return nil, err
	}
	if len(ups) == 0 {
		logger.Warn("no upstream resolvers: names outside the cluster will fail", "resolvConf", cfg.ResolvConf)
	}
	s := &Server{
		cfg:     cfg,
		zone:    strings.ToLower(mdns.Fqdn(cfg.Domain)),
		log:     logger,
		metrics: m,
		fwd:     newForwarder(ups, cfg.UpstreamTimeout, cfg.CacheSize, cfg.Clock, m),
		factory: factory,
		signal:  make(chan struct{}, 1),
		slow:    make(chan struct{}, 1024),
		ready:   make(chan struct{}),
	}
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	podInf := factory.Core().V1().Pods()
	s.services, s.slices, s.pods = svcInf.Lister(), sliceInf.Lister(), podInf.Lister()
	changed := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	// Pods change far more often than their DNS does: only a change of IPs
	// or of phase to/from terminal matters.
	podChanged := changed
	podChanged.UpdateFunc = func(o, n any) {
		op, ok1 := o.(*v1.Pod)
		np, ok2 := n.(*v1.Pod)
		if !ok1 || !ok2 || podDNSChanged(op, np) {
			s.poke()
		}
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{svcInf.Informer(), changed}, {sliceInf.Informer(), changed}, {podInf.Informer(), podChanged}} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("adding dns event handler: %w", err)
		}
		s.synced = append(s.synced, h.inf.HasSynced)
	}
	return s, nil
}

func podDNSChanged(o, n *v1.Pod) bool {
	if o.Status.PodIP != n.Status.PodIP || len(o.Status.PodIPs) != len(n.Status.PodIPs) || o.Spec.HostNetwork != n.Spec.HostNetwork {
		return true
	}
	for i := range o.Status.PodIPs {
		if o.Status.PodIPs[i].IP != n.Status.PodIPs[i].IP {
			return true
		}
	}
	terminal := func(p v1.PodPhase) bool { return p == v1.PodSucceeded || p == v1.PodFailed }
	return terminal(o.Status.Phase) != terminal(n.Status.Phase)
}

// upstreams returns the configured resolvers as host:port, or those of the
// resolv.conf file, leaving out any that is one of our own listen addresses
// (forwarding to ourselves would loop).
func upstreams(cfg Config) ([]string, error) {
	var out []string
	if len(cfg.Upstreams) > 0 {
		for _, u := range cfg.Upstreams {
			if _, _, err := net.SplitHostPort(u); err != nil {
				u = net.JoinHostPort(u, "53")
			}
			out = append(out, u)
		}
	} else {
		rc, err := mdns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("reading upstream resolvers: %w", err)
		}
		for _, srv := range rc.Servers {
			out = append(out, net.JoinHostPort(srv, rc.Port))
		}
	}
	own := map[string]bool{}
	for _, a := range cfg.ListenAddrs {
		own[a] = true
	}
	kept := out[:0]
	for _, u := range out {
		if !own[u] {
			kept = append(kept, u)
		}
	}
	return kept, nil
}

func (s *Server) poke() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// Ready is closed once the server listens and has built its first index.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// UDPAddrs and TCPAddrs are the bound addresses, valid after Ready.
func (s *Server) UDPAddrs() []net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.udp }

// udpSockets is how many UDP sockets the server has bound (tests).
func (s *Server) udpSockets() int { s.mu.Lock(); defer s.mu.Unlock(); return s.nudp }

// TCPAddrs: see UDPAddrs.
func (s *Server) TCPAddrs() []net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.tcp }

// Run listens on every address, keeps the index in step with the
// informers and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var conns []*net.UDPConn
	var lns []net.Listener
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	for _, addr := range s.cfg.ListenAddrs {
		cs, l, err := listen(ctx, addr, s.cfg.UDPWorkers)
		if err != nil {
			closeAll()
			return err
		}
		s.mu.Lock()
		s.udp, s.tcp = append(s.udp, cs[0].LocalAddr()), append(s.tcp, l.Addr())
		s.nudp += len(cs)
		s.mu.Unlock()
		conns, lns = append(conns, cs...), append(lns, l)
	}

	var wg sync.WaitGroup
	var tcpServers []*mdns.Server
	for _, c := range conns {
		wg.Go(func() { s.serveUDP(ctx, c) })
	}
	for _, l := range lns {
		srv := &mdns.Server{Listener: l, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
		tcpServers = append(tcpServers, srv)
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				s.log.Error("serving dns over tcp", "addr", l.Addr().String(), "err", err)
			}
		})
	}
	s.log.Info("dns server listening", "udp", s.udp, "socketsPerAddr", s.cfg.UDPWorkers, "domain", s.zone)

	s.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		closeAll()
		wg.Wait()
		return fmt.Errorf("waiting for dns informers: %w", ctx.Err())
	}
	s.rebuild()
	close(s.ready)

	for {
		select {
		case <-ctx.Done():
			for _, srv := range tcpServers {
				_ = srv.Shutdown()
			}
			closeAll()
			wg.Wait()
			return nil
		case <-s.signal:
			// Let a burst of changes land before paying for a rebuild.
			select {
			case <-time.After(s.cfg.MinSyncPeriod):
			case <-ctx.Done():
				continue
			}
			s.rebuild()
		}
	}
}

// reusePort sets SO_REUSEPORT so several UDP sockets share one port: the
// kernel spreads datagrams over them by flow hash, and each socket has its
// own reader and its own receive queue and lock.
func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// listen binds addr over UDP with n SO_REUSEPORT sockets and over TCP on
// the same port; with port 0 the port is the one the first UDP socket was
// given, retrying if another socket has it over TCP.
func listen(ctx context.Context, addr string, n int) ([]*net.UDPConn, net.Listener, error) {
	lc := net.ListenConfig{Control: reusePort}
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listening on udp %s: %w", addr, err)
		}
		conns := []*net.UDPConn{pc.(*net.UDPConn)}
		closeConns := func() {
			for _, c := range conns {
				c.Close()
			}
		}
		bound := conns[0].LocalAddr().String()
		for len(conns) < n {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				closeConns()
				return nil, nil, fmt.Errorf("listening on udp %s (socket %d of %d): %w", bound, len(conns)+1, n, err)
			}
			conns = append(conns, pc.(*net.UDPConn))
		}
		l, err := net.Listen("tcp", bound)
		if err != nil {
			closeConns()
			if _, port, _ := net.SplitHostPort(addr); port == "0" && attempt < 10 {
				continue
			}
			return nil, nil, fmt.Errorf("listening on tcp %s: %w", addr, err)
		}
		return conns, l, nil
	}
}

func (s *Server) rebuild() {
	start := time.Now()
	svcs, err1 := s.services.List(labels.Everything())
	slices, err2 := s.slices.List(labels.Everything())
	pods, err3 := s.pods.List(labels.Everything())
	if err := errors.Join(err1, err2, err3); err != nil {
		s.log.Error("listing objects for dns index", "err", err)
		return
	}
	ix := BuildIndex(IndexInput{Services: svcs, Slices: slices, Pods: pods}, s.indexOptions())
	s.index.Store(ix)
	s.log.Debug("dns index rebuilt", "names", ix.Len(), "services", len(svcs), "took", time.Since(start))
}

func (s *Server) indexOptions() IndexOptions {
	return IndexOptions{
		Zone:          s.zone,
		TTL:           uint32(s.cfg.TTL / time.Second),
		Serial:        uint32(s.cfg.Clock.Now().Unix()),
		NameserverIPs: s.cfg.NameserverIPs,
	}
}

// setIndex replaces the index directly (tests and benchmarks).
func (s *Server) setIndex(ix *Index) { s.index.Store(ix) }

// udpBatch is how many datagrams one recvmmsg/sendmmsg call moves at most.
const udpBatch = 32

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share: recvmmsg and
// sendmmsg.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// serveUDP reads up to udpBatch queries per system call, answers those the
// fast path can straight into per-slot output buffers and sends them all
// with one more call; the rest go to a goroutine each on the general path.
func (s *Server) serveUDP(ctx context.Context, c *net.UDPConn) {
	bc := newBatchConn(c)
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
		out[i].Buffers = make([][]byte, 1)
		outBufs[i] = make([]byte, 0, 4096)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ix := s.index.Load()
		w := 0
		for i := range in[:n] {
			m := &in[i]
			if m.Flags&unix.MSG_TRUNC != 0 {
				continue // larger than any query we answer; not worth a FORMERR
			}
			q := m.Buffers[0][:m.N]
			if ix != nil {
				if resp, qtype, ok := s.answerFast(ix, q, outBufs[w][:0]); ok {
					out[w].Buffers[0], out[w].Addr = resp, m.Addr
					w++
					s.metrics.query(qtype, int(resp[3]&0x0f))
					continue
				}
			}
			s.slowUDP(ctx, c, q, m.Addr)
		}
		for sent := 0; sent < w; {
			k, err := bc.WriteBatch(out[sent:w], 0)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				// One bad destination must not cost the others their answers.
				k = max(k, 1)
			}
			sent += k
		}
	}
}

// slowUDP hands a query the fast path declined to a goroutine, or drops it
// when too many are already in flight (the client retries).
func (s *Server) slowUDP(ctx context.Context, c *net.UDPConn, q []byte, addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	select {
	case s.slow <- struct{}{}:
	default:
		return
	}
	q = append([]byte(nil), q...)
	from := ua.AddrPort()
	go func() {
		defer func() { <-s.slow }()
		s.serveUDPSlow(ctx, c, q, from)
	}()
}

func (s *Server) serveUDPSlow(ctx context.Context, c *net.UDPConn, q []byte, from netip.AddrPort) {
	req := new(mdns.Msg)
	if err := req.Unpack(q); err != nil {
		if req.Id == 0 && len(q) < 12 {
			return
		}
		resp := new(mdns.Msg)
		resp.SetRcodeFormatError(req)
		if b, err := resp.Pack(); err == nil {
			_, _ = c.WriteToUDPAddrPort(b, from)
		}
		return
	}
	if req.Response {
		return
	}
	resp := s.answer(ctx, req, true)
	b, err := resp.Pack()
	if err != nil {
		s.log.Error("packing dns response", "err", err)
		return
	}
	_, _ = c.WriteToUDPAddrPort(b, from)
}

// ServeDNS answers a query arriving over TCP.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.UpstreamTimeout)
	defer cancel()
	_ = w.WriteMsg(s.answer(ctx, req, false))
}

// answer is the general path: any query, any transport.
func (s *Server) answer(ctx context.Context, req *mdns.Msg, udp bool) *mdns.Msg {
	resp := new(mdns.Msg)
	if req.Opcode != mdns.OpcodeQuery {
		resp.SetRcode(req, mdns.RcodeNotImplemented)
		return s.finish(req, resp, udp)
	}
	if len(req.Question) != 1 {
		resp.SetRcodeFormatError(req)
		return s.finish(req, resp, udp)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	ix := s.index.Load()
	inZone := name == s.zone || mdns.IsSubDomain(s.zone, name)
	switch {
	case inZone && ix == nil:
		resp.Rcode = mdns.RcodeServerFailure // informers not synced yet
	case inZone && q.Qclass != mdns.ClassINET:
		resp.Rcode = mdns.RcodeRefused
	default:
		var r Result
		if ix != nil && q.Qclass == mdns.ClassINET {
			r = ix.Lookup(name, q.Qtype)
		}
		if r.Ours {
			resp.Authoritative = true
			resp.Rcode, resp.Answer, resp.Ns, resp.Extra = r.Rcode, r.Answer, r.Ns, r.Extra
			if r.Chase != "" {
				up, err := s.fwd.exchange(ctx, mdns.Question{Name: r.Chase, Qtype: q.Qtype, Qclass: mdns.ClassINET})
				if err != nil {
					s.log.Debug("chasing externalname", "name", name, "target", r.Chase, "err", err)
					resp.Rcode = mdns.RcodeServerFailure
				} else {
					resp.Rcode = up.Rcode
					resp.Answer = append(append([]mdns.RR(nil), r.Answer...), up.Answer...)
					resp.Ns = up.Ns
				}
			}
			break
		}
		up, err := s.fwd.exchange(ctx, q)
		if err != nil {
			s.log.Debug("forwarding dns query", "name", name, "err", err)
			resp.Rcode = mdns.RcodeServerFailure
			break
		}
		resp.Rcode, resp.Answer, resp.Ns, resp.Extra = up.Rcode, up.Answer, up.Ns, up.Extra
		resp.AuthenticatedData = false
	}
	return s.finish(req, resp, udp)
}

// finish adds EDNS0 when the client used it, truncates for UDP and counts.
func (s *Server) finish(req, resp *mdns.Msg, udp bool) *mdns.Msg {
	size := mdns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(mdns.MinMsgSize, min(int(opt.UDPSize()), 1232))
		resp.SetEdns0(1232, false)
	}
	if udp {
		resp.Truncate(size)
	} else {
		resp.Truncate(mdns.MaxMsgSize)
	}
	var qtype uint16
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	s.metrics.query(qtype, resp.Rcode)
	return resp
}
