package main

// The in-pod halves of the benchmark: a TCP echo server, the load generator
// and the verdict prober. Each runs as its own process inside a pod's
// network namespace (`ip netns exec`), talks only to the address it is given,
// and is bounded in time and count.

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// msgSize is the size of one request and of its answer.
const msgSize = 32

// Hard bounds of one load run, whatever the flags say.
const (
	maxDuration    = 5 * time.Second
	maxConnections = 20000
	maxRequests    = 200000
)

// serveMain echoes fixed-size messages on every connection until the peer
// closes; it exits by itself after -lifetime.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	port := fs.Int("port", 9000, "TCP port")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	time.AfterFunc(*lifetime, func() { os.Exit(0) })
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(maxDuration + 5*time.Second))
			buf := make([]byte, msgSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// LoadResult is what one `load` run prints (JSON).
type LoadResult struct {
	Mode        string  `json:"mode"`
	Workers     int     `json:"workers"`
	Count       int     `json:"count"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50Seconds  float64 `json:"p50_seconds"`
	P99Seconds  float64 `json:"p99_seconds"`
	MeanSeconds float64 `json:"mean_seconds"`
}

func exchange(c net.Conn, buf []byte) error {
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

// loadMain: -mode conn = new connection, one request, close (per worker,
// sequentially); -mode rr = one kept-alive connection, sequential requests.
func loadMain(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	addr := fs.String("addr", "", "ip:port of the server")
	mode := fs.String("mode", "conn", "conn | rr")
	workers := fs.Int("workers", 2, "parallel connections (conn mode)")
	dur := fs.Duration("duration", 2*time.Second, "run time (at most 5s)")
	max := fs.Int("max", maxConnections, "at most this many connections/requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dur > maxDuration {
		*dur = maxDuration
	}
	limit := maxConnections
	if *mode == "rr" {
		limit, *workers = maxRequests, 1
	}
	if *max > limit || *max <= 0 {
		*max = limit
	}
	var (
		issued atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		lat    []time.Duration
		wg     sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(*dur)
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, msgSize)
			local := make([]time.Duration, 0, 4096)
			var keep net.Conn
			if *mode == "rr" {
				c, err := net.DialTimeout("tcp", *addr, time.Second)
				if err != nil {
					errs.Add(1)
					return
				}
				keep = c
				defer c.Close()
				_ = c.SetDeadline(deadline.Add(time.Second))
			}
			for time.Now().Before(deadline) && issued.Add(1) <= int64(*max) {
				t := time.Now()
				var err error
				if keep != nil {
					err = exchange(keep, buf)
				} else {
					var c net.Conn
					c, err = net.DialTimeout("tcp", *addr, time.Second)
					if err == nil {
						_ = c.SetDeadline(time.Now().Add(time.Second))
						err = exchange(c, buf)
						c.Close()
					}
				}
				if err != nil {
					errs.Add(1)
					if keep != nil {
						return
					}
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r := LoadResult{Mode: *mode, Workers: *workers, Count: len(lat), Errors: int(errs.Load()), Seconds: el.Seconds()}
	r.PerSecond = float64(r.Count) / el.Seconds()
	if len(lat) > 0 {
		slices.Sort(lat)
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		r.P50Seconds = quantile(lat, 0.50).Seconds()
		r.P99Seconds = quantile(lat, 0.99).Seconds()
		r.MeanSeconds = (sum / time.Duration(len(lat))).Seconds()
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// probeMain reads commands "allowed" / "blocked" on stdin; for each, it
// probes addr every -interval (a connect with -timeout; connected = allowed,
// timed out = blocked) until the verdict matches or -limit passes, and
// answers "<unix nanos of the start of the first matching probe> <probes>"
// (or "timeout <probes>"). A command may name its own connect timeout
// ("blocked 1s"): on a loaded machine an allowed connect can take longer
// than a short one, which would read as blocked too early.
func probeMain(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	addr := fs.String("addr", "", "ip:port")
	interval := fs.Duration("interval", 10*time.Millisecond, "poll interval")
	timeout := fs.Duration("timeout", 20*time.Millisecond, "connect timeout (a dropped SYN shows as blocked after it)")
	limit := fs.Duration("limit", 5*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 || len(f) > 2 || (f[0] != "allowed" && f[0] != "blocked") {
			return fmt.Errorf("unknown command %q", in.Text())
		}
		want, connectTimeout := f[0], *timeout
		if len(f) == 2 {
			d, err := time.ParseDuration(f[1])
			if err != nil || d <= 0 {
				return fmt.Errorf("command %q: bad connect timeout", in.Text())
			}
			connectTimeout = d
		}
		end := time.Now().Add(*limit)
		n := 0
		answered := false
		for time.Now().Before(end) {
			t := time.Now()
			n++
			c, err := net.DialTimeout("tcp", *addr, connectTimeout)
			got := "allowed"
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					got = "error"
				} else {
					got = "blocked"
				}
			} else {
				c.Close()
			}
			if got == want {
				fmt.Printf("%d %d\n", t.UnixNano(), n)
				answered = true
				break
			}
			if d := *interval - time.Since(t); d > 0 {
				time.Sleep(d)
			}
		}
		if !answered {
			fmt.Printf("timeout %d\n", n)
		}
	}
	return in.Err()
}

// fetchMain prints an HTTP GET of a URL (the agent's metrics, from inside
// the node's namespace).
func fetchMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: fetch URL")
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
