// Command testapp is the program in localhost/skiff/testapp:v1, the image
// skiff's end-to-end tests run. With no arguments (or "serve") it serves:
//
//	HTTP :8080  /healthz, /readyz (toggle: /readyz?set=ok|fail), /hostname,
//	            /env, /echo (body or ?msg=), /exit?code=N,
//	            /write?path=P&data=D (writes a file, for volume tests),
//	            /cat?path=P (reads one), /id (uid, gid and groups)
//	TCP  :9000  echo
//	UDP  :9001  echo
//
// Ports come from HTTP_PORT, TCP_ECHO_PORT and UDP_ECHO_PORT when set.
//
// There is no shell in the image. For exec, testapp is a multicall binary:
// "testapp cat|ls|echo|sleep|env|hostname|write|exit|alloc ARGS" (or invoked
// through the /bin/<name> symlinks the image carries, so "kubectl exec POD
// -- cat /etc/hosts" works). "sh -c" is not emulated. "alloc MiB" touches
// that much memory and sleeps, to breach a memory limit.
package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	args := os.Args
	if name := filepath.Base(args[0]); name != "testapp" && name != "main" {
		os.Exit(tool(name, args[1:]))
	}
	if len(args) > 1 && args[1] != "serve" {
		os.Exit(tool(args[1], args[2:]))
	}
	serve()
}

func tool(name string, args []string) int {
	switch name {
	case "cat":
		for _, a := range args {
			f, err := os.Open(a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "cat:", err)
				return 1
			}
			io.Copy(os.Stdout, f)
			f.Close()
		}
		if len(args) == 0 {
			io.Copy(os.Stdout, os.Stdin)
		}
	case "ls":
		if len(args) == 0 {
			args = []string{"."}
		}
		for _, a := range args {
			ents, err := os.ReadDir(a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ls:", err)
				return 1
			}
			for _, e := range ents {
				fmt.Println(e.Name())
			}
		}
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "sleep":
		d := 1.0
		if len(args) > 0 {
			d, _ = strconv.ParseFloat(args[0], 64)
		}
		time.Sleep(time.Duration(d * float64(time.Second)))
	case "env":
		env := os.Environ()
		sort.Strings(env)
		fmt.Println(strings.Join(env, "\n"))
	case "hostname":
		h, _ := os.Hostname()
		fmt.Println(h)
	case "write":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: write FILE DATA")
			return 2
		}
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
	case "alloc":
		mib := 64
		if len(args) > 0 {
			mib, _ = strconv.Atoi(args[0])
		}
		var hold [][]byte
		for i := 0; i < mib; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			hold = append(hold, b)
		}
		fmt.Printf("allocated %d MiB\n", len(hold))
		time.Sleep(time.Hour)
	case "exit":
		code := 0
		if len(args) > 0 {
			code, _ = strconv.Atoi(args[0])
		}
		return code
	default:
		fmt.Fprintf(os.Stderr, "testapp: unknown command %q (have cat, ls, echo, sleep, env, hostname, write, exit, alloc, serve)\n", name)
		return 127
	}
	return 0
}

func port(env, def string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	return def
}

func serve() {
	var notReady atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("set") {
		case "ok":
			notReady.Store(false)
		case "fail":
			notReady.Store(true)
		}
		if notReady.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) {
		h, _ := os.Hostname()
		io.WriteString(w, h)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		io.WriteString(w, strings.Join(env, "\n")+"\n")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if msg := r.URL.Query().Get("msg"); msg != "" {
			io.WriteString(w, msg)
			return
		}
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		io.WriteString(w, "exiting\n")
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(code) }()
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query().Get("path")
		if err := os.WriteFile(p, []byte(r.URL.Query().Get("data")), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/cat", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		groups, _ := os.Getgroups()
		fmt.Fprintf(w, "uid=%d gid=%d groups=%v", os.Getuid(), os.Getgid(), groups)
	})
	go tcpEcho(":" + port("TCP_ECHO_PORT", "9000"))
	go udpEcho(":" + port("UDP_ECHO_PORT", "9001"))
	addr := ":" + port("HTTP_PORT", "8080")
	log.Printf("testapp serving http on %s", addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}

func tcpEcho(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("tcp echo: %v", err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() { defer c.Close(); io.Copy(c, c) }()
	}
}

func udpEcho(addr string) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatalf("udp echo: %v", err)
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		pc.WriteTo(buf[:n], from)
	}
}
