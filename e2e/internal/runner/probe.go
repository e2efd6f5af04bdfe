// Probing: where a probe goes and what it observes.

package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// Target resolves where a probe from src to dst goes in family f: address
// and port.
func (r *Runner) Target(p scenario.Probe, dst *kubelet.Pod, f cluster.Family) (string, error) {
	port := p.Port
	if p.PortName != "" {
		port = 0
		for _, sv := range dst.Spec.Servers {
			if sv.PortName() == p.PortName && sv.Protocol == p.Protocol {
				port = sv.Port
			}
		}
		if port == 0 {
			return "", fmt.Errorf("%s has no %s port named %s", dst.Spec.Key(), p.Protocol, p.PortName)
		}
	}
	a, ok := dst.Addr(f)
	if !ok {
		return "", fmt.Errorf("%s has no %s address", dst.Spec.Key(), f)
	}
	ip := a.String()
	if p.Target != "pod-ip" && dst.Spec.Namespace != kubelet.NodeNamespace {
		// service-name falls back to the ClusterIP: the cluster has no DNS.
		if dst.ClusterIP == "" {
			return "", fmt.Errorf("%s has no Service (host network): probe it by pod-ip", dst.Spec.Key())
		}
		if ip, ok = dst.ClusterIPIn(f); !ok {
			return "", fmt.Errorf("%s's Service has no %s address", dst.Spec.Key(), f)
		}
	}
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String(), nil
}

// endpoint returns the pod for key, or for "node/<name>" the node endpoint
// (nftpolicy extension: probes from and to a node's own network namespace).
func (r *Runner) endpoint(key string) (*kubelet.Pod, error) {
	if p, ok := r.pods[key]; ok {
		return p, nil
	}
	name, ok := strings.CutPrefix(key, kubelet.NodeNamespace+"/")
	if !ok {
		return nil, fmt.Errorf("no pod %s", key)
	}
	r.nodeMu.Lock()
	defer r.nodeMu.Unlock()
	if p, ok := r.nodes[name]; ok {
		return p, nil
	}
	for _, n := range r.State.Nodes {
		if n.Name == name {
			p, err := r.Backend.NodeServer(context.Background(), n, r.servers)
			if err != nil {
				return nil, err
			}
			r.nodes[name] = p
			return p, nil
		}
	}
	return nil, fmt.Errorf("no pod or node %s", key)
}

func (r *Runner) probe(p scenario.Probe, srcKey, dstKey string, f cluster.Family) (byte, string) {
	src, err := r.endpoint(srcKey)
	if err != nil {
		return 'E', err.Error()
	}
	dst, err := r.endpoint(dstKey)
	if err != nil {
		return 'E', err.Error()
	}
	addr, err := r.Target(p, dst, f)
	if err != nil {
		return 'E', err.Error()
	}
	return r.ProbeAddr(p.Protocol, src, dst, addr)
}

// ProbeAddr probes addr from src; dst is the pod expected to receive it
// (SCTP asks it whether the INIT arrived).
func (r *Runner) ProbeAddr(proto string, src, dst *kubelet.Pod, addr string) (byte, string) {
	ms := int(r.Opt.ProbeTimeout / time.Millisecond)
	tag := rand.Uint32() | 1
	resp, err := podserver.Call(src.Ctl, podserver.Request{Op: "probe", Protocol: proto, Addr: addr, Timeout: ms, Tag: tag}, r.Opt.ProbeTimeout+5*time.Second)
	if err != nil {
		return 'E', "podserver " + src.Spec.Key() + ": " + err.Error()
	}
	if proto == "SCTP" && resp.Result == podserver.Sent {
		resp, err = podserver.Call(dst.Ctl, podserver.Request{Op: "seen", Tag: tag, Timeout: ms}, r.Opt.ProbeTimeout+5*time.Second)
		if err != nil {
			return 'E', "podserver " + dst.Spec.Key() + ": " + err.Error()
		}
	}
	switch resp.Result {
	case podserver.Connected:
		if proto != "SCTP" && resp.Answer != dst.Spec.Key() {
			return 'E', fmt.Sprintf("connected, but %q answered, not %s (%s)", resp.Answer, dst.Spec.Key(), resp.Detail)
		}
		return '.', resp.Detail
	case podserver.Timeout:
		return 'X', ""
	case podserver.Refused:
		return 'R', resp.Detail
	}
	return 'E', resp.Result + " " + resp.Detail
}
