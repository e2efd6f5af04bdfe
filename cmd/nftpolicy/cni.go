package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-logr/logr"

	"github.com/nftpolicy/nftpolicy/cniapi"
)

// cniMaxWait bounds how long one announcement may hold its request, should
// the plugin's own (shorter) timeout not end it first.
const cniMaxWait = 30 * time.Second

// cniServer serves the chained CNI plugin's announcements on a unix socket
// while the manager runs (a manager.Runnable).
type cniServer struct {
	path     string
	announce cniapi.AnnounceFunc
	log      logr.Logger
}

// NeedLeaderElection is false: every node's agent serves its own plugin.
func (s *cniServer) NeedLeaderElection() bool { return false }

// Start listens on the socket and serves until ctx ends. A socket that
// cannot be created is logged, not fatal: the agent still enforces, and
// new pods are dropped until their status carries an address.
func (s *cniServer) Start(ctx context.Context) error {
	l, err := cniapi.Listen(s.path)
	if err != nil {
		s.log.Error(err, "CNI socket unavailable: new pods wait, dropped, for their status before they are programmed", "path", s.path)
		<-ctx.Done()
		return nil
	}
	srv := &http.Server{Handler: cniapi.Handler(s.announce, cniMaxWait), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	s.log.Info("serving the CNI plugin", "path", s.path)
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("CNI socket %s: %w", s.path, err)
	}
}

// hostAddresses returns the addresses of the node's interfaces (the agent
// runs in the host network namespace): the bridge gateway that Flannel's
// bridge plugin puts in the pod CIDR is one of them.
func hostAddresses() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
