// Command web is the workload image of the Ferry e2e tests.
//
//	GET /          -> the pod's hostname
//	GET /healthz   -> 200 "ok"
//	GET /version   -> the version (v1, v2, ...), set at build time with
//	                  -ldflags "-X main.version=v2" or at run time with $VERSION
//	GET /burn?ms=N -> burns one CPU for N milliseconds (autoscaler tests)
//	UDP :5353      -> echoes the hostname to every datagram
//
// Flags (or env): -http (:8080, $HTTP_ADDR), -udp (:5353, $UDP_ADDR),
// -max-burn-ms (60000, $MAX_BURN_MS).
//
// The image has no shell or curl, so the binary is also the client that
// tests run with kubectl exec:
//
//	/web get URL [TIMEOUT]    prints the body of GET URL (non-2xx: exit 1); TIMEOUT default 5s
//	/web udp HOST:PORT [MSG]  sends MSG (default "ping"), prints the reply
//	/web resolve NAME         prints NAME's addresses, one a line, looked up
//	                          through the pod's /etc/resolv.conf (cluster DNS)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var version = "dev"

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "get" || os.Args[1] == "udp" || os.Args[1] == "resolve") {
		os.Exit(clientMain(os.Args[1], os.Args[2:]))
	}
	httpAddr := flag.String("http", env("HTTP_ADDR", ":8080"), "HTTP listen address")
	udpAddr := flag.String("udp", env("UDP_ADDR", ":5353"), "UDP echo listen address (empty disables)")
	maxBurn, _ := strconv.Atoi(env("MAX_BURN_MS", "60000"))
	flag.IntVar(&maxBurn, "max-burn-ms", maxBurn, "upper bound for /burn?ms=N")
	flag.Parse()
	if v := os.Getenv("VERSION"); v != "" {
		version = v
	}
	host, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, version) })
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > maxBurn {
			http.Error(w, fmt.Sprintf("ms must be an integer in [0,%d]", maxBurn), http.StatusBadRequest)
			return
		}
		deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
		n := 0
		for time.Now().Before(deadline) {
			for i := 0; i < 10000; i++ {
				n += i * i
			}
		}
		fmt.Fprintf(w, "%s burned %dms (%d)\n", host, ms, n&1)
	})

	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			log.Fatalf("udp listen %s: %v", *udpAddr, err)
		}
		go func() {
			buf := make([]byte, 65535)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					log.Printf("udp read: %v", err)
					return
				}
				if _, err := pc.WriteTo([]byte(host+"\n"), from); err != nil {
					log.Printf("udp write to %s: %v", from, err)
				}
			}
		}()
	}

	srv := &http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	log.Printf("web %s on %s (http) %s (udp) as %s", version, *httpAddr, *udpAddr, host)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatalf("http: %v", err)
	}
}

func clientMain(mode string, args []string) int {
	if len(args) < 1 {
		fmt.Fprintf(os.Stderr, "usage: web %s TARGET [ARG]\n", mode)
		return 2
	}
	timeout := 5 * time.Second
	switch mode {
	case "get":
		if len(args) > 1 {
			d, err := time.ParseDuration(args[1])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			timeout = d
		}
		c := &http.Client{Timeout: timeout}
		resp, err := c.Get(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer resp.Body.Close()
		_, _ = io.Copy(os.Stdout, resp.Body)
		if resp.StatusCode/100 != 2 {
			fmt.Fprintln(os.Stderr, resp.Status)
			return 1
		}
		return 0
	case "resolve":
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, a := range addrs {
			fmt.Println(a)
		}
		return 0
	default: // udp
		msg := "ping"
		if len(args) > 1 {
			msg = args[1]
		}
		conn, err := net.DialTimeout("udp", args[0], timeout)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		if _, err := conn.Write([]byte(msg)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _ = os.Stdout.Write(buf[:n])
		return 0
	}
}
