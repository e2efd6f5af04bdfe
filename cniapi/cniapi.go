// Package cniapi is the small protocol between the chained CNI plugin
// (cmd/nftpolicy-cni) and the agent on the same node: on a pod's CNI ADD
// the plugin posts the pod's name and addresses to the agent over a unix
// socket, and the agent answers once the pod's rules are in the kernel.
//
// It uses the standard library only, so that the plugin, which the
// container runtime executes for every pod, stays small and static.
package cniapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// DefaultSocket is where the agent listens and the plugin connects unless
// configured otherwise (a hostPath directory shared by both).
const DefaultSocket = "/run/nftpolicy/cni.sock"

// announcePath is the one endpoint.
const announcePath = "/v1/pod-addresses"

// maxBody bounds a request: a name, a namespace and a few addresses.
const maxBody = 16 << 10

// Announcement is a new pod's name and the addresses its CNI ADD gave it.
type Announcement struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	IPs       []netip.Addr `json:"ips"`
}

// reply is the agent's answer; Error is empty on success.
type reply struct {
	Error string `json:"error,omitempty"`
}

// AnnounceFunc records an announcement and returns once the pod's rules are
// in the kernel, or with an error (ctx ended, bad input).
type AnnounceFunc func(ctx context.Context, namespace, name string, ips []netip.Addr) error

// Handler serves announcements: each request waits in announce at most
// maxWait (and no longer than its client stays connected).
func Handler(announce AnnounceFunc, maxWait time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+announcePath, func(w http.ResponseWriter, req *http.Request) {
		var a Announcement
		dec := json.NewDecoder(io.LimitReader(req.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			writeReply(w, http.StatusBadRequest, fmt.Errorf("decode announcement: %w", err))
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), maxWait)
		defer cancel()
		if err := announce(ctx, a.Namespace, a.Name, a.IPs); err != nil {
			status := http.StatusGatewayTimeout
			if ctx.Err() == nil {
				status = http.StatusBadRequest
			}
			writeReply(w, status, err)
			return
		}
		writeReply(w, http.StatusOK, nil)
	})
	return mux
}

func writeReply(w http.ResponseWriter, status int, err error) {
	var r reply
	if err != nil {
		r.Error = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(r)
}

// Listen creates the agent's socket at path, replacing a stale one left by
// an earlier agent, readable and writable by its owner (root) only: an
// announcement decides which pod an address belongs to.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cni socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale cni socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on cni socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("cni socket permissions: %w", err)
	}
	return l, nil
}

// Announce posts a to the agent at socketPath and waits for its answer
// until ctx ends. An error means the agent did not confirm that the pod's
// rules are in the kernel: it is down, unreachable, slow or refused the
// announcement.
func Announce(ctx context.Context, socketPath string, a Announcement) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://nftpolicy"+announcePath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", socketPath, err)
	}
	defer resp.Body.Close()
	var r reply
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&r); err != nil {
		return fmt.Errorf("agent at %s: HTTP %d, unreadable answer: %w", socketPath, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || r.Error != "" {
		return fmt.Errorf("agent at %s: HTTP %d: %s", socketPath, resp.StatusCode, r.Error)
	}
	return nil
}
