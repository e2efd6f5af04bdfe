// Package deniedlog checks the agent's denied-traffic log on the local
// cluster (`e2e denied-log`, part of `make test`): a denied probe yields
// exactly one record, naming both pods and the isolating policy, and an
// allowed probe none; a probe an Admin ClusterNetworkPolicy Deny rule
// denies yields one record naming that policy and rule. The same probes
// move the server node's counters (nftpolicy_denied_packets_total of the
// server's namespace, or namespace "" for the Deny rule, and
// nftpolicy_new_connections_total) by exactly what they sent. It also
// finds the latest record for `make demo`.
package deniedlog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// Record is one "denied traffic" line of an agent's JSON log.
type Record struct {
	Msg       string   `json:"msg"`
	Node      string   `json:"node"`
	Time      string   `json:"packetTime"`
	Direction string   `json:"direction"`
	Protocol  string   `json:"protocol"`
	Src       string   `json:"src"`
	SrcPod    string   `json:"srcPod"`
	Dst       string   `json:"dst"`
	DstPod    string   `json:"dstPod"`
	Policies  []string `json:"policies"`
	Rule      string   `json:"rule"`
	Chain     string   `json:"chain"`
	// Audit: what policies in audit mode would have dropped; it went on.
	Audit bool `json:"audit"`
	// Line is the line as the agent wrote it.
	Line string `json:"-"`
}

const deniedMsg = "denied traffic"

// Offsets are the sizes of the agents' log files at one moment: records
// after it are read with Since.
type Offsets map[string]int64

// agentLogs lists the agents' log files (one per node).
func agentLogs(cfg *cluster.Config) ([]string, error) {
	return filepath.Glob(filepath.Join(cfg.LogDir(), "*-agent.log"))
}

// Mark returns the current end of every agent log.
func Mark(cfg *cluster.Config) (Offsets, error) {
	files, err := agentLogs(cfg)
	if err != nil {
		return nil, err
	}
	o := Offsets{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		o[f] = fi.Size()
	}
	return o, nil
}

// Since returns the records written after o (from the start of logs o does
// not know).
func Since(cfg *cluster.Config, o Offsets) ([]Record, error) {
	files, err := agentLogs(cfg)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(o[name], io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, deniedMsg) {
				continue
			}
			var r Record
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == deniedMsg {
				r.Line = line
				out = append(out, r)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

const (
	namespace = "denied-log"
	port      = 5353
	policy    = "server-from-friend"
	// cnp and cnpRule deny friend's traffic to server in the Admin tier,
	// which NetworkPolicies cannot admit.
	cnp     = "denied-log-no-friend"
	cnpRule = "no-friend"
)

var check = &scenario.Scenario{
	Name: "denied-log",
	Cluster: scenario.Cluster{
		Namespaces: []scenario.Namespace{{Name: namespace}},
		Pods: []scenario.Pod{
			{Namespace: namespace, Name: "client", Labels: map[string]string{"app": "client"}},
			{Namespace: namespace, Name: "friend", Labels: map[string]string{"app": "friend"}},
			{Namespace: namespace, Name: "server", Labels: map[string]string{"app": "server"}},
		},
		Servers: []scenario.Server{{Port: port, Protocol: "UDP"}},
	},
}

// serverFromFriend isolates server for ingress and admits friend on UDP 5353.
func serverFromFriend() *networkingv1.NetworkPolicy {
	proto := corev1.ProtocolUDP
	p := intstr.FromInt32(port)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: policy}}
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "friend"}}}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &proto, Port: &p}},
	}}
	return np
}

// noFriend is an Admin ClusterNetworkPolicy denying server's ingress from
// friend.
func noFriend() *policyv1beta1.ClusterNetworkPolicy {
	inNamespace := func(app string) *policyv1beta1.NamespacedPod {
		return &policyv1beta1.NamespacedPod{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: namespace}},
			PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		}
	}
	p := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: cnp}}
	p.Spec.Tier = policyv1beta1.AdminTier
	p.Spec.Priority = 10
	p.Spec.Subject.Pods = inNamespace("server")
	p.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{{
		Name:   cnpRule,
		Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
		From:   []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: inNamespace("friend")}},
	}}
	return p
}

// Check runs the check and prints the record it saw. It cleans up its
// namespace.
func Check(ctx context.Context, cfg *cluster.Config, st *cluster.State, out io.Writer) (err error) {
	r, err := runner.New(ctx, cfg, st, out, runner.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Cleanup(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.Prepare(ctx, check); err != nil {
		return err
	}
	pods := r.Pods()
	client, friend, server := pods[namespace+"/client"], pods[namespace+"/friend"], pods[namespace+"/server"]
	if _, err := r.CS.NetworkingV1().NetworkPolicies(namespace).Create(ctx, serverFromFriend(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create policy: %w", err)
	}
	addr := netip.AddrPortFrom(server.IP, port).String()
	probe := func(src *kubelet.Pod) byte { v, _ := r.ProbeAddr("UDP", src, server, addr); return v }
	// Until enforced (bounded): these probes log too, so they come before
	// the mark.
	deadline := time.Now().Add(15 * time.Second)
	for probe(client) != 'X' || probe(friend) != '.' {
		if time.Now().After(deadline) {
			return errors.New("policy not enforced within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let the node's bucket refill (at the default 10/s, 20 tokens take
	// 2s), so the measured record cannot be lost to the limit.
	time.Sleep(2500 * time.Millisecond)

	mark, err := Mark(cfg)
	if err != nil {
		return err
	}
	before, err := agentCounters(ctx, cfg, server.Node.IP)
	if err != nil {
		return fmt.Errorf("counters of %s: %w", server.Node.Name, err)
	}
	if v := probe(client); v != 'X' {
		return fmt.Errorf("client to server: %c, want blocked", v)
	}
	if v := probe(friend); v != '.' {
		return fmt.Errorf("friend to server: %c, want connected", v)
	}
	got, err := onlyRecord(cfg, mark, "one denied and one allowed probe")
	if err != nil {
		return err
	}
	after, err := agentCounters(ctx, cfg, server.Node.IP)
	if err != nil {
		return fmt.Errorf("counters of %s: %w", server.Node.Name, err)
	}
	// The denied probe is one datagram, dropped by server's ingress: one
	// packet in its namespace's series; the allowed one is at least one
	// accepted new connection on server's node.
	if err := checkIncrements(increments(before, after), map[string]float64{
		`nftpolicy_denied_packets_total{direction="ingress",namespace="` + namespace + `"}`: 1,
		`nftpolicy_new_connections_total{verdict="denied"}`:                                 1,
	}, 1); err != nil {
		return fmt.Errorf("node %s, one denied and one allowed probe: %w", server.Node.Name, err)
	}
	if d := podDrops(after, server.Spec.Key(), "ingress") - podDrops(before, server.Spec.Key(), "ingress"); d != 1 {
		return fmt.Errorf("node %s: %s says %s's ingress dropped %d packets, want 1", server.Node.Name, controllers.CountersPath, server.Spec.Key(), d)
	}
	fmt.Fprintf(out, "denied-log: node %s counted the denied probe in namespace %s, the allowed one as accepted:\n%s\n",
		server.Node.Name, namespace, formatSeries(after))
	want := Record{Node: server.Node.Name, Direction: "ingress", Protocol: "UDP", SrcPod: client.Spec.Key(), Dst: addr,
		DstPod: server.Spec.Key(), Policies: []string{policy}}
	if got.Node != want.Node || got.Direction != want.Direction || got.Protocol != want.Protocol || got.SrcPod != want.SrcPod ||
		!strings.HasPrefix(got.Src, client.IP.String()+":") || got.Dst != want.Dst || got.DstPod != want.DstPod ||
		!slices.Equal(got.Policies, want.Policies) {
		return fmt.Errorf("record %s\nwant node %s, %s %s from %s (%s) to %s (%s), policies %v",
			got.Line, want.Node, want.Direction, want.Protocol, want.SrcPod, client.IP, want.DstPod, want.Dst, want.Policies)
	}
	fmt.Fprintf(out, "denied-log: one record for the denied probe, none for the allowed one:\n%s\n", got.Line)
	return checkClusterDeny(ctx, cfg, r, friend, server, probe, out)
}

// onlyRecord waits well past the milliseconds a record takes to reach the
// log, then returns the one record written since mark, or an error listing
// them all when there is not exactly one (what names the probes).
func onlyRecord(cfg *cluster.Config, mark Offsets, what string) (Record, error) {
	time.Sleep(2 * time.Second)
	recs, err := Since(cfg, mark)
	if err != nil {
		return Record{}, err
	}
	if len(recs) != 1 {
		var lines []string
		for _, rec := range recs {
			lines = append(lines, rec.Line)
		}
		return Record{}, fmt.Errorf("%d denied-traffic records for %s, want 1:\n%s", len(recs), what, strings.Join(lines, "\n"))
	}
	return recs[0], nil
}

// checkClusterDeny denies friend (admitted by the NetworkPolicy) with an
// Admin ClusterNetworkPolicy Deny rule: the one record of a denied probe
// names that policy and rule.
func checkClusterDeny(ctx context.Context, cfg *cluster.Config, r *runner.Runner, friend, server *kubelet.Pod,
	probe func(*kubelet.Pod) byte, out io.Writer) (err error) {
	defer func() {
		if derr := r.DeleteClusterNetworkPolicies(context.WithoutCancel(ctx)); derr != nil && err == nil {
			err = derr
		}
	}()
	if err := r.CreateClusterNetworkPolicy(ctx, noFriend()); err != nil {
		return fmt.Errorf("create ClusterNetworkPolicy: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for probe(friend) != 'X' {
		if time.Now().After(deadline) {
			return errors.New("ClusterNetworkPolicy Deny not enforced within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // refill the node's bucket, as above
	mark, err := Mark(cfg)
	if err != nil {
		return err
	}
	before, err := agentCounters(ctx, cfg, server.Node.IP)
	if err != nil {
		return fmt.Errorf("counters of %s: %w", server.Node.Name, err)
	}
	if v := probe(friend); v != 'X' {
		return fmt.Errorf("friend to server under %s: %c, want blocked", cnp, v)
	}
	got, err := onlyRecord(cfg, mark, "one probe denied by "+cnp)
	if err != nil {
		return err
	}
	after, err := agentCounters(ctx, cfg, server.Node.IP)
	if err != nil {
		return fmt.Errorf("counters of %s: %w", server.Node.Name, err)
	}
	// A Deny rule's chain is shared by pods of any namespace: it counts
	// under namespace "", and per rule in the document.
	if err := checkIncrements(increments(before, after), map[string]float64{
		`nftpolicy_denied_packets_total{direction="ingress",namespace=""}`: 1,
		`nftpolicy_new_connections_total{verdict="denied"}`:                1,
	}, 0); err != nil {
		return fmt.Errorf("node %s, one probe denied by %s: %w", server.Node.Name, cnp, err)
	}
	if d := ruleDrops(after, cnp, cnpRule) - ruleDrops(before, cnp, cnpRule); d != 1 {
		return fmt.Errorf("node %s: %s says %s's rule %s dropped %d packets, want 1: %+v", server.Node.Name, controllers.CountersPath,
			cnp, cnpRule, d, after.doc.DenyRules)
	}
	fmt.Fprintf(out, "denied-log: node %s counted the probe %s denies under namespace \"\" and its rule:\n%s\n",
		server.Node.Name, cnp, formatSeries(after))
	if got.Node != server.Node.Name || got.Direction != "ingress" || got.SrcPod != friend.Spec.Key() || got.DstPod != server.Spec.Key() ||
		!slices.Equal(got.Policies, []string{cnp}) || got.Rule != cnpRule {
		return fmt.Errorf("record %s\nwant node %s, ingress from %s to %s, policies [%s], rule %s",
			got.Line, server.Node.Name, friend.Spec.Key(), server.Spec.Key(), cnp, cnpRule)
	}
	fmt.Fprintf(out, "denied-log: one record for the probe a ClusterNetworkPolicy denies, naming it and its rule:\n%s\n", got.Line)
	return nil
}
