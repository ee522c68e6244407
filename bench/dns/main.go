// Command dns loads skiff's cluster DNS server over UDP on loopback and
// prints queries/s and latency percentiles. The server runs in this process
// against a fake clientset holding -services ClusterIP services; -clients
// closed-loop clients (one socket each, one query outstanding) ask A
// questions for random services for -duration.
//
//	go run ./bench/dns -services 100 -clients 50 -duration 10s
//
// With -serve it only serves (and writes a dnsperf query file), so an
// external load generator can be pointed at it:
//
//	go run ./bench/dns -serve -listen 127.0.0.1:5300 -queries /tmp/q.txt
//	dnsperf -s 127.0.0.1 -p 5300 -d /tmp/q.txt -c 50 -l 10
//
// With -kubeconfig the server watches a real API server instead of the fake
// clientset (the side-by-side run with CoreDNS, bench/dns/sidebyside.sh):
//
//	go run ./bench/dns -serve -kubeconfig admin.kubeconfig -listen 127.0.0.1:5300
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	skiffdns "skiff.dev/skiff/internal/dns"
)

func main() {
	services := flag.Int("services", 100, "ClusterIP services in the fake cluster")
	clients := flag.Int("clients", 50, "concurrent closed-loop clients")
	duration := flag.Duration("duration", 10*time.Second, "length of the measured run")
	listen := flag.String("listen", "127.0.0.1:0", "address the server binds (loopback only)")
	serve := flag.Bool("serve", false, "only serve, for an external load generator")
	queries := flag.String("queries", "", "write a dnsperf query file here")
	kubeconfig := flag.String("kubeconfig", "", "serve the cluster this kubeconfig points at instead of a fake one (implies -serve)")
	flag.Parse()
	var err error
	if *kubeconfig != "" {
		err = serveCluster(*kubeconfig, *listen)
	} else {
		err = run(*services, *clients, *duration, *listen, *serve, *queries)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dns bench:", err)
		os.Exit(1)
	}
}

// serveCluster serves DNS for the cluster behind kubeconfig on listen until
// interrupted, with the agent's defaults (informers on every namespace).
func serveCluster(kubeconfig, listen string) error {
	if host, _, err := net.SplitHostPort(listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("listen address %q must be loopback host:port", listen)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	srv, err := skiffdns.New(skiffdns.Config{
		ListenAddrs: []string{listen},
		Upstreams:   []string{"127.0.0.1:1"}, // nothing is forwarded in this benchmark
	}, factory, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return err
	}
	fmt.Printf("serving the cluster of %s on %s (udp+tcp); interrupt to stop\n", kubeconfig, srv.UDPAddrs()[0])
	<-ctx.Done()
	return <-done
}

func run(nsvc, nclients int, d time.Duration, listen string, serveOnly bool, queryFile string) error {
	if host, _, err := net.SplitHostPort(listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("listen address %q must be loopback host:port", listen)
	}
	var objs []runtime.Object
	names := make([]string, nsvc)
	for i := range nsvc {
		name := fmt.Sprintf("svc-%d", i)
		names[i] = name + ".bench.svc.cluster.local."
		objs = append(objs, &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: v1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.43.%d.%d", i/250, i%250+1),
				Ports:     []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}},
			},
		})
	}
	if queryFile != "" {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "%s A\n", n)
		}
		if err := os.WriteFile(queryFile, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("writing query file: %w", err)
		}
	}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(objs...), 0)
	srv, err := skiffdns.New(skiffdns.Config{
		ListenAddrs: []string{listen},
		Upstreams:   []string{"127.0.0.1:1"}, // nothing is forwarded in this benchmark
	}, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return err
	}
	addr := srv.UDPAddrs()[0].(*net.UDPAddr)
	if serveOnly {
		fmt.Printf("serving %d services on %s (udp+tcp); interrupt to stop\n", nsvc, addr)
		<-ctx.Done()
		return <-done
	}
	res, err := load(addr, names, nclients, d)
	stop()
	if err2 := <-done; err == nil {
		err = err2
	}
	if err != nil {
		return err
	}
	fmt.Printf("%-9s %-8s %-9s %-10s %-9s %-9s %-9s %-6s\n", "services", "clients", "duration", "qps", "p50", "p99", "p99.9", "lost")
	fmt.Printf("%-9d %-8d %-9s %-10.0f %-9s %-9s %-9s %-6d\n", nsvc, nclients, d, res.qps, res.p50, res.p99, res.p999, res.lost)
	return nil
}

type result struct {
	qps            float64
	p50, p99, p999 time.Duration
	lost           int64
}

// load runs closed-loop clients against addr: each sends a query, waits
// for its answer (or 1s), records the latency and sends the next.
func load(addr *net.UDPAddr, names []string, nclients int, d time.Duration) (result, error) {
	wires := make([][]byte, len(names))
	for i, n := range names {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		w, err := m.Pack()
		if err != nil {
			return result{}, fmt.Errorf("packing query: %w", err)
		}
		wires[i] = w
	}
	var (
		wg      sync.WaitGroup
		lost    atomic.Int64
		stopped atomic.Bool
		mu      sync.Mutex
		all     []time.Duration
		firstEr error
	)
	start := time.Now()
	for c := range nclients {
		wg.Go(func() {
			conn, err := net.DialUDP("udp", nil, addr)
			if err != nil {
				mu.Lock()
				firstEr = fmt.Errorf("dialing %s: %w", addr, err)
				mu.Unlock()
				return
			}
			defer conn.Close()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			lat := make([]time.Duration, 0, 1<<16)
			q := make([]byte, 512)
			buf := make([]byte, 1500)
			for id := uint16(c); !stopped.Load(); id++ {
				w := wires[rng.IntN(len(wires))]
				q = append(q[:0], w...)
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				if _, err := conn.Write(q); err != nil {
					lost.Add(1)
					continue
				}
				_ = conn.SetReadDeadline(t0.Add(time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						lost.Add(1)
						break
					}
					if n >= 12 && binary.BigEndian.Uint16(buf) == id && buf[3]&0x0f == 0 {
						lat = append(lat, time.Since(t0))
						break
					}
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	time.Sleep(d)
	stopped.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if firstEr != nil {
		return result{}, firstEr
	}
	if len(all) == 0 {
		return result{}, fmt.Errorf("no answers in %s", d)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{
		qps:  float64(len(all)) / elapsed.Seconds(),
		p50:  pct(0.50).Round(time.Microsecond),
		p99:  pct(0.99).Round(time.Microsecond),
		p999: pct(0.999).Round(time.Microsecond),
		lost: lost.Load(),
	}, nil
}
