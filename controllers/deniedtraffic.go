package controllers

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// DeniedTraffic turns the records of the deny log (nft.DenyLog, read from
// NFLOG by the caller) into one log line each, naming the pods from the
// pod store and the policies that isolate the dropping pod. Records come
// at most at the node's deny-log rate, so the work here (a scan of the pod
// store per record) is bounded by that rate, never by traffic.
type DeniedTraffic struct {
	pods   *PodStore
	reader client.Reader
	log    logr.Logger
	// auditAll: every NetworkPolicy is in audit mode.
	auditAll bool
}

// DeniedTraffic returns the deny-log reader's sink. Call it after
// SetupWithManager, which provides the pod store and the cache.
func (r *Reconciler) DeniedTraffic() *DeniedTraffic {
	return &DeniedTraffic{pods: r.pods, reader: r.reader, log: r.log.WithName("denied"), auditAll: r.auditAll}
}

// DeniedConnection is one deny-log record resolved against the API state.
type DeniedConnection struct {
	Time      time.Time
	Direction string // ingress or egress: the side that dropped
	Protocol  string
	Src, Dst  string // address:port, or the address for protocols without ports
	// SrcPod and DstPod are namespace/name, empty for an address that is
	// no pod's (a node, or outside the cluster).
	SrcPod, DstPod string
	// Policies are the NetworkPolicies isolating the dropping pod in
	// Direction, none of which admitted the packet, sorted by name; for a
	// ClusterNetworkPolicy Deny, that one policy.
	Policies []string
	// Rule is the ClusterNetworkPolicy rule that denied (its name, or
	// "ingress[i]"/"egress[i]"); empty for an allow-list drop.
	Rule string
	// Chain is the chain that dropped, as the log prefix names it; empty
	// for a ClusterNetworkPolicy Deny.
	Chain string
	// Audit: nothing was dropped. Policies are the audited NetworkPolicies
	// that select the pod in Direction, none of which admitted the packet,
	// or the audited ClusterNetworkPolicy whose Deny Rule the packet met:
	// enforced, they would have dropped it.
	Audit bool
}

// Resolve reads p's prefix and finds its pods and policies. ok is false
// for a record no deny-log rule of ours wrote.
func (d *DeniedTraffic) Resolve(ctx context.Context, p nft.LoggedPacket) (c DeniedConnection, ok bool) {
	dec, ok := nft.ParseLogPrefix(p.Prefix)
	if !ok {
		return DeniedConnection{}, false
	}
	c = DeniedConnection{
		Time:      p.Time,
		Direction: dec.Dir.String(),
		Protocol:  protocolName(p.Proto),
		Src:       endpoint(p.Src, p.SrcPort, p.Proto),
		Dst:       endpoint(p.Dst, p.DstPort, p.Proto),
		Chain:     dec.Chain,
		Audit:     dec.Verdict == nft.VerdictWordAudit,
	}
	src, dst := d.podsByIP(p.Src, p.Dst)
	if src != nil {
		c.SrcPod = src.Key()
	}
	if dst != nil {
		c.DstPod = dst.Key()
	}
	if dec.Policy != "" {
		// A ClusterNetworkPolicy rule, enforced (deny) or audited: the
		// prefix names the policy and rule, nothing to look up.
		c.Policies, c.Rule = []string{dec.Policy}, dec.Rule
		return c, true
	}
	dropping := dst
	if dec.Dir == nft.Egress {
		dropping = src
	}
	if dropping != nil {
		c.Policies = d.isolating(ctx, dropping, dec.Dir, c.Audit)
	}
	return c, true
}

// Record logs one record (see Resolve); records of other prefixes are
// ignored.
func (d *DeniedTraffic) Record(ctx context.Context, p nft.LoggedPacket) {
	c, ok := d.Resolve(ctx, p)
	if !ok {
		return
	}
	kv := []any{
		"packetTime", c.Time.UTC().Format(time.RFC3339Nano),
		"direction", c.Direction,
		"protocol", c.Protocol,
		"src", c.Src, "srcPod", c.SrcPod,
		"dst", c.Dst, "dstPod", c.DstPod,
		"policies", c.Policies,
	}
	if c.Audit {
		// What audited policies would have dropped: it went on.
		kv = append(kv, "audit", true)
	}
	// A ClusterNetworkPolicy Deny names its rule, an allow-list drop its
	// chain.
	if c.Rule != "" {
		kv = append(kv, "rule", c.Rule)
	} else {
		kv = append(kv, "chain", c.Chain)
	}
	d.log.Info("denied traffic", kv...)
}

// podsByIP finds the active pods with addresses a and b in one pass over
// the store.
func (d *DeniedTraffic) podsByIP(a, b netip.Addr) (pa, pb *policy.Pod) {
	a, b = a.Unmap(), b.Unmap()
	d.pods.Each(func(p *policy.Pod) {
		if !p.Active() {
			return
		}
		for _, ip := range p.IPs {
			switch ip.Unmap() {
			case a:
				pa = p
			case b:
				pb = p
			}
		}
	})
	return pa, pb
}

// isolating names the NetworkPolicies that isolate pod in dir, from the
// cache, the enforced ones or (audit) the audited ones; nil when the cache
// cannot be read (the line is still logged).
func (d *DeniedTraffic) isolating(ctx context.Context, pod *policy.Pod, dir nft.Direction, audit bool) []string {
	var list networkingv1.NetworkPolicyList
	if err := d.reader.List(ctx, &list, client.InNamespace(pod.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		d.log.Error(err, "list NetworkPolicies for a denied-traffic record", "pod", pod.Key())
		return nil
	}
	nps := make([]*networkingv1.NetworkPolicy, 0, len(list.Items))
	for i := range list.Items {
		if np := &list.Items[i]; (d.auditAll || policy.Audited(np)) == audit {
			nps = append(nps, np)
		}
	}
	names := policy.IsolatingPolicies(pod, dir, nps)
	slices.Sort(names)
	return names
}

func endpoint(a netip.Addr, port uint16, proto uint8) string {
	switch proto {
	case nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP:
		return netip.AddrPortFrom(a.Unmap(), port).String()
	}
	return a.Unmap().String()
}

func protocolName(p uint8) string {
	switch p {
	case nft.ProtoTCP:
		return "TCP"
	case nft.ProtoUDP:
		return "UDP"
	case nft.ProtoSCTP:
		return "SCTP"
	case nft.ProtoICMP:
		return "ICMP"
	case nft.ProtoICMPv6:
		return "ICMPv6"
	}
	return strconv.Itoa(int(p))
}
