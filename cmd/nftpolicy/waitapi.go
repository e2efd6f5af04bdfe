package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// apiRetryEvery is how often a read waiting for an unreachable API server
// tries again.
const apiRetryEvery = 250 * time.Millisecond

// waitForAPI wraps the transport of the agent's API client: a GET that
// fails before any response because the API server cannot be reached
// (refused, reset, cut off in the handshake, no route) is sent again every
// apiRetryEvery until its context ends, instead of failing.
//
// Why: the informers' reflectors back off exponentially on every failed
// list or watch (0.8 s doubling to 30 s, with up to as much again of
// jitter, reset only after two quiet minutes), so after an outage of a
// minute the agent would learn of the changes made meanwhile up to a
// minute after the API server is back. A list or watch that waits for the
// API server is answered as soon as it is back. Only GETs, which carry no
// body, are repeated, and only errors that say nothing reached the server
// or nothing came back; an error such as a bad certificate still fails.
type waitForAPI struct {
	next  http.RoundTripper
	log   logr.Logger
	every time.Duration
	// waiting counts the requests waiting now, so that an outage is logged
	// once when the first starts to wait and once when the last is answered.
	waiting atomic.Int64
}

func (w *waitForAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(req)
	if err == nil || req.Method != http.MethodGet || req.Body != nil || !unreachable(err) {
		return resp, err
	}
	if w.waiting.Add(1) == 1 {
		w.log.Info("API server unreachable; reads wait for it instead of backing off", "error", err.Error())
	}
	defer func() {
		if w.waiting.Add(-1) == 0 && err == nil {
			w.log.Info("API server reachable again")
		}
	}()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-req.Context().Done():
			return nil, err // the last error says why better than "canceled"
		case <-t.C:
		}
		resp, err = w.next.RoundTrip(req)
		if err == nil || !unreachable(err) {
			return resp, err
		}
	}
}

// unreachable reports whether err says that the API server could not be
// reached or dropped the connection before it answered.
func unreachable(err error) bool {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}
