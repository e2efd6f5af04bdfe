package main

// IP plan: one HTTP server on a loopback port that is closed at first.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// countingTransport counts round trips and reports when the second one
// has failed.
type countingTransport struct {
	next   http.RoundTripper
	n      atomic.Int32
	second chan struct{}
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := c.n.Add(1)
	resp, err := c.next.RoundTrip(req)
	if n == 2 && err != nil {
		close(c.second)
	}
	return resp, err
}

// closedPort returns a loopback address nothing listens on (yet).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func newWaitClient() (*http.Client, *countingTransport) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DisableKeepAlives = true
	ct := &countingTransport{next: base, second: make(chan struct{})}
	return &http.Client{Transport: &waitForAPI{next: ct, log: logr.Discard(), every: 10 * time.Millisecond}}, ct
}

func TestWaitForAPI_GetWaitsUntilTheServerListens(t *testing.T) {
	addr := closedPort(t)
	client, ct := newWaitClient()
	go func() {
		<-ct.second // refused twice: now the server comes
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "here") })}
		t.Cleanup(func() { srv.Close() })
		go func() { _ = srv.Serve(l) }()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound for a broken test only
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET = %v, want it to wait until the server listens", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "here" || ct.n.Load() < 3 {
		t.Errorf("body %q after %d round trips, want \"here\" after at least 3", body, ct.n.Load())
	}
}

func TestWaitForAPI_OtherRequestsFailAtOnce(t *testing.T) {
	addr := closedPort(t)
	t.Run("POST", func(t *testing.T) {
		client, ct := newWaitClient()
		resp, err := client.Post("http://"+addr+"/api", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			t.Fatal("POST to a closed port succeeded")
		}
		if n := ct.n.Load(); n != 1 {
			t.Errorf("POST sent %d times, want once (a body is never sent twice)", n)
		}
	})
	t.Run("GET whose context ends", func(t *testing.T) {
		client, ct := newWaitClient()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-ct.second; cancel() }()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("GET to a closed port succeeded")
		}
		if !unreachable(err) && !errors.Is(err, context.Canceled) {
			t.Errorf("GET = %v, want the last connection error", err)
		}
	})
	t.Run("not a connection error", func(t *testing.T) {
		err := errors.New("x509: certificate signed by unknown authority")
		if unreachable(err) {
			t.Errorf("unreachable(%v) = true: a bad certificate must fail, not wait", err)
		}
	})
}
