package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// inNetNS runs open on a thread that is inside the named network namespace
// for the call: a socket created there keeps that namespace after the
// thread returns to its own.
func inNetNS[T any](nsName string, open func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return zero, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(nsName)
	if err != nil {
		return zero, fmt.Errorf("netns %s: %w", nsName, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return zero, err
	}
	v, openErr := open()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace; let it die with the goroutine.
		panic(fmt.Sprintf("restoring netns: %v", err))
	}
	return v, openErr
}

// ListenInNetNS opens a TCP listener inside the named network namespace.
func ListenInNetNS(nsName, addr string) (net.Listener, error) {
	return inNetNS(nsName, func() (net.Listener, error) { return net.Listen("tcp", addr) })
}

// Relay runs the apiserver relay: a listener on 127.0.0.1:NodeAPIPort in each
// node namespace, each connection forwarded to the apiserver on the host's
// loopback. It writes StateDir/relay.ready once listening and runs until the
// process is killed.
func Relay(stateDir string) error {
	c := &Config{StateDir: stateDir}
	s, ok := c.LoadState()
	if !ok {
		return fmt.Errorf("no cluster state in %s", stateDir)
	}
	target := fmt.Sprintf("127.0.0.1:%d", s.Instance.APIPort())
	var wg sync.WaitGroup
	for _, n := range s.Nodes {
		l, err := ListenInNetNS(n.NetNS, fmt.Sprintf("127.0.0.1:%d", NodeAPIPort))
		if err != nil {
			return fmt.Errorf("relay listener in %s: %w", n.NetNS, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := l.Accept()
				if err != nil {
					log.Printf("relay %s: accept: %v", n.NetNS, err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				go pipe(conn, target)
			}
		}()
	}
	if s.Kubelet {
		if err := kubeletRelays(c, s, target, &wg); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(stateDir, "relay.ready"), []byte("ok\n"), 0o644); err != nil {
		return err
	}
	wg.Wait()
	return nil
}

// kubeletRelays opens what a cluster of real kubelets needs beyond the
// nodes' 127.0.0.1:NodeAPIPort: the apiserver at UnderlayGW:NodeAPIPort in
// the underlay namespace (the endpoint of the kubernetes Service, so that
// in-cluster clients such as the agent's DaemonSet pods reach it through
// kube-proxy), and an HTTP CONNECT proxy on a unix socket that the
// apiserver's egress selector sends its kubelet connections (exec, logs,
// port-forward) through, dialled inside the underlay namespace. The host
// has no route to the node addresses, which every instance reuses.
func kubeletRelays(c *Config, s *State, target string, wg *sync.WaitGroup) error {
	l, err := ListenInNetNS(s.Instance.UnderlayNS(), net.JoinHostPort(UnderlayGW, fmt.Sprint(NodeAPIPort)))
	if err != nil {
		return fmt.Errorf("relay listener in %s: %w", s.Instance.UnderlayNS(), err)
	}
	sock := c.kubeletProxySocket()
	_ = os.Remove(sock)
	ul, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("kubelet proxy socket: %w", err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		serve(l, func(conn net.Conn) { pipe(conn, target) })
	}()
	go func() {
		defer wg.Done()
		serve(ul, func(conn net.Conn) { connectInNetNS(conn, s.Instance.UnderlayNS()) })
	}()
	return nil
}

// serve hands every accepted connection to handle, in its own goroutine.
func serve(l net.Listener, handle func(net.Conn)) {
	for {
		conn, err := l.Accept()
		if err != nil {
			log.Printf("relay %s: accept: %v", l.Addr(), err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go handle(conn)
	}
}

// connectInNetNS answers one HTTP CONNECT request (the apiserver's egress
// selector, proxyProtocol HTTPConnect) by dialling its host:port from
// inside nsName and piping both ways.
func connectInNetNS(in net.Conn, nsName string) {
	defer in.Close()
	br := bufio.NewReader(in)
	req, err := http.ReadRequest(br)
	if err != nil {
		log.Printf("kubelet proxy: reading the CONNECT request: %v", err)
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = fmt.Fprintf(in, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := DialInNetNS(ctx, nsName, "tcp", req.Host)
	cancel()
	if err != nil {
		log.Printf("kubelet proxy: dial %s in %s: %v", req.Host, nsName, err)
		_, _ = fmt.Fprintf(in, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer out.Close()
	if _, err := fmt.Fprintf(in, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	// Bytes the client sent after its request are in br's buffer.
	go func() { _, _ = io.Copy(out, br); closeWrite(out); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
	<-done
	<-done
}

func pipe(in net.Conn, target string) {
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		log.Printf("relay: dial %s: %v", target, err)
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// DialInNetNS opens a connection from inside the named network namespace.
// The socket is created in that namespace; connecting may then go on in
// any thread.
func DialInNetNS(ctx context.Context, nsName, network, addr string) (net.Conn, error) {
	return inNetNS(nsName, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
}
