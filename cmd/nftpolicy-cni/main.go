// Command nftpolicy-cni is a chained CNI plugin that closes the window
// between a pod getting its address and the nftpolicy agent enforcing
// policy on it. Placed after the plugins that attach the pod (flannel,
// portmap), on ADD it tells the node's agent the pod's name and addresses
// (from CNI_ARGS and prevResult) over a unix socket and waits until the
// agent has the pod's rules in the kernel, then returns prevResult
// unchanged. DEL, CHECK, GC and STATUS have nothing to do.
//
// It never blocks pod creation for long: when the agent does not answer
// within "timeout" (default 3s) or cannot be reached at all, the plugin
// still succeeds. The pod is then not open but dropped: the agent's table
// drops every address of the node's pod CIDRs it does not know, until the
// agent learns the pod (from this announcement or the pod's status) and
// syncs.
//
// Network configuration (one entry of the conflist's "plugins"):
//
//	{"type": "nftpolicy-cni", "socketPath": "/run/nftpolicy/cni.sock", "timeout": "3s"}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/cniapi"
)

const (
	defaultTimeout = 3 * time.Second
	// maxTimeout keeps a typo from stalling every pod of the node.
	maxTimeout = 30 * time.Second

	// CNI error codes (CNI spec, "Error"): 4 invalid environment
	// variables, 6 failure to decode content, 7 invalid network config.
	codeInvalidEnv    = 4
	codeDecodeFailure = 6
	codeInvalidConfig = 7
)

// supportedVersions are the CNI spec versions whose results carry "ips",
// which is all the plugin reads.
var supportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// netConf is the plugin's configuration with what the runtime injects.
type netConf struct {
	CNIVersion string          `json:"cniVersion"`
	Name       string          `json:"name"`
	SocketPath string          `json:"socketPath"`
	Timeout    string          `json:"timeout"`
	PrevResult json.RawMessage `json:"prevResult"`
}

// result is the part of a CNI result the plugin reads.
type result struct {
	IPs []struct {
		Address string `json:"address"`
	} `json:"ips"`
}

// cniError is the CNI error result, printed on stdout with a non-zero exit.
type cniError struct {
	CNIVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

func main() { os.Exit(run(os.Getenv, os.Stdin, os.Stdout, os.Stderr)) }

func run(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch cmd := getenv("CNI_COMMAND"); cmd {
	case "VERSION":
		_ = json.NewEncoder(stdout).Encode(map[string]any{"cniVersion": supportedVersions[len(supportedVersions)-1], "supportedVersions": supportedVersions})
		return 0
	case "ADD":
		return add(getenv, stdin, stdout, stderr)
	case "DEL", "CHECK", "GC", "STATUS":
		// Nothing was created, so nothing is deleted or checked: the
		// agent forgets a pod when its object goes.
		return 0
	default:
		return fail(stdout, "", codeInvalidEnv, "CNI_COMMAND", fmt.Sprintf("unknown CNI_COMMAND %q", cmd))
	}
}

func add(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	raw, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return fail(stdout, "", codeDecodeFailure, "read network configuration", err.Error())
	}
	var conf netConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return fail(stdout, "", codeDecodeFailure, "decode network configuration", err.Error())
	}
	timeout, err := timeoutOf(conf.Timeout)
	if err != nil {
		return fail(stdout, conf.CNIVersion, codeInvalidConfig, "timeout", err.Error())
	}
	if len(conf.PrevResult) == 0 || string(conf.PrevResult) == "null" {
		return fail(stdout, conf.CNIVersion, codeInvalidConfig, "no prevResult",
			"nftpolicy-cni must be chained after the plugin that gives the pod its addresses (e.g. flannel)")
	}
	var prev result
	if err := json.Unmarshal(conf.PrevResult, &prev); err != nil {
		return fail(stdout, conf.CNIVersion, codeDecodeFailure, "decode prevResult", err.Error())
	}
	socket := conf.SocketPath
	if socket == "" {
		socket = cniapi.DefaultSocket
	}
	a := cniapi.Announcement{}
	for k, v := range cniArgs(getenv("CNI_ARGS")) {
		switch k {
		case "K8S_POD_NAMESPACE":
			a.Namespace = v
		case "K8S_POD_NAME":
			a.Name = v
		}
	}
	for _, ip := range prev.IPs {
		if p, err := netip.ParsePrefix(ip.Address); err == nil {
			a.IPs = append(a.IPs, p.Addr())
		} else if addr, err := netip.ParseAddr(ip.Address); err == nil {
			a.IPs = append(a.IPs, addr)
		}
	}
	switch {
	case a.Namespace == "" || a.Name == "":
		fmt.Fprintln(stderr, "nftpolicy-cni: no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS: not a pod, nothing to announce")
	case len(a.IPs) == 0:
		fmt.Fprintf(stderr, "nftpolicy-cni: pod %s/%s: prevResult has no addresses, nothing to announce\n", a.Namespace, a.Name)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		err := cniapi.Announce(ctx, socket, a)
		cancel()
		if err != nil {
			// Not a CNI error: the pod must be created even while the
			// agent is away. It is dropped (fail closed) until the
			// agent knows it.
			fmt.Fprintf(stderr, "nftpolicy-cni: pod %s/%s %v: agent did not confirm its rules after %v (%v); the pod stays isolated until the agent programs it\n",
				a.Namespace, a.Name, a.IPs, time.Since(start).Round(time.Millisecond), err)
		}
	}
	if _, err := stdout.Write(conf.PrevResult); err != nil {
		return 1
	}
	return 0
}

// timeoutOf parses the configured timeout (empty: the default).
func timeoutOf(s string) (time.Duration, error) {
	if s == "" {
		return defaultTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 || d > maxTimeout {
		return 0, fmt.Errorf("%v is not in (0, %v]", d, maxTimeout)
	}
	return d, nil
}

// cniArgs splits CNI_ARGS ("K1=V1;K2=V2").
func cniArgs(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

func fail(stdout io.Writer, version string, code int, msg, details string) int {
	if version == "" {
		version = supportedVersions[len(supportedVersions)-1]
	}
	_ = json.NewEncoder(stdout).Encode(cniError{CNIVersion: version, Code: code, Msg: msg, Details: details})
	return 1
}
