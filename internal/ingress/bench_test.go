package ingress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// benchTable is n Ingresses, each with one host, 10 Prefix paths and one
// service with 3 endpoints.
func benchInputs(n int) ([]*networkingv1.Ingress, *mapSource) {
	src := newSource()
	ings := make([]*networkingv1.Ingress, 0, n)
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc-%d", i)
		src.addService("default", svc, 8080, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), fmt.Sprintf("10.3.%d.%d", i/250, i%250+1))
		var paths []path
		for j := 0; j < 10; j++ {
			paths = append(paths, path{prefix, fmt.Sprintf("/api/v%d", j), svc})
		}
		ings = append(ings, ingress(fmt.Sprintf("ing-%d", i), time.Duration(i)*time.Second, map[string][]path{fmt.Sprintf("host-%d.example.com", i): paths}))
	}
	return ings, src
}

// BenchmarkBuild is the cost of one table rebuild (every watched change
// pays it once, coalesced).
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		ings, src := benchInputs(n)
		b.Run(fmt.Sprintf("ingresses=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				Build(ings, src, nil)
			}
		})
	}
}

// BenchmarkMatch is the per-request routing cost.
func BenchmarkMatch(b *testing.B) {
	ings, src := benchInputs(5000)
	tab := Build(ings, src, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if tab.Match("host-4321.example.com", "/api/v7/users/42") == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkProxy compares a request straight to a backend with one through
// the proxy (both over loopback HTTP/1.1 with keep-alive).
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	tab := staticTable(strings.TrimPrefix(backend.URL, "http://"))
	front := httptest.NewServer(NewProxy(ProxyConfig{}, func() *Table { return tab }, quiet))
	defer front.Close()
	for _, tc := range []struct{ name, url string }{{"direct", backend.URL}, {"proxied", front.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, tc.url+"/", nil)
					req.Host = "app.test"
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
