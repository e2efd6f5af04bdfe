// Teardown, and the status report of what is running.

package cluster

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Down kills every process the harness started, deletes its namespaces and
// its state directory. It works from the pid files and the instance's
// NSPrefix, so it
// also cleans a crashed run.
func (c *Config) Down() error {
	var errs []error
	// Pods first (podservers), then node components, then the control plane.
	errs = append(errs, c.StopAll("pod-"))
	if s, ok := c.LoadState(); ok {
		for _, n := range s.Nodes {
			// The kubelet first, so that it restarts no container.
			for _, p := range []string{"kubelet", "agent", "kube-proxy", "flanneld"} {
				errs = append(errs, c.Stop(n.Name+"-"+p))
			}
		}
	}
	// Kubelet nodes: containers and containerd's shims by their cgroups,
	// then containerd; the nodes' mount namespaces die with them.
	errs = append(errs, c.killNodeCgroups())
	errs = append(errs, c.StopAll("e2e-node-"))
	errs = append(errs, c.Stop("kube-scheduler"))
	for i := len(controlProcs) - 1; i >= 0; i-- {
		errs = append(errs, c.Stop(controlProcs[i]))
	}
	errs = append(errs, c.StopAll(""))
	out, err := run("ip", "netns", "list")
	if err == nil {
		var names []string
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && strings.HasPrefix(f[0], c.Instance.NSPrefix()) {
				names = append(names, f[0])
			}
		}
		// Pod namespaces before node and underlay namespaces.
		for _, pass := range []func(string) bool{
			func(n string) bool { return strings.HasPrefix(n, c.Instance.NSPrefix()+"p-") },
			func(n string) bool { return true },
		} {
			for _, n := range names {
				if pass(n) {
					if _, err := os.Stat("/run/netns/" + n); err == nil {
						if _, err := run("ip", "netns", "del", n); err != nil {
							errs = append(errs, err)
						}
					}
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	if c.StateDir != "" && c.StateDir != "/" {
		errs = append(errs, os.RemoveAll(c.StateDir))
	}
	return errors.Join(errs...)
}

// Status describes what runs.
func (c *Config) Status() string {
	var b strings.Builder
	s, ok := c.LoadState()
	if !ok {
		return "cluster: down (no state in " + c.StateDir + ")\n"
	}
	_, healthy := c.Healthy()
	fmt.Fprintf(&b, "cluster: ready=%v healthy=%v state=%s\nkubeconfig: %s\nagent: %q\n", s.Ready, healthy, c.StateDir, c.AdminKubeconfig(), s.AgentCmd)
	for _, p := range controlProcs {
		fmt.Fprintf(&b, "  %-28s %s\n", p, aliveWord(c.Alive(p)))
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  node %s netns=%s ip=%s podCIDR=%s\n", n.Name, n.NetNS, n.IP, n.PodCIDR)
		for _, p := range []string{"flanneld", "kube-proxy", "agent"} {
			if p == "agent" && s.AgentCmd == "" {
				continue
			}
			fmt.Fprintf(&b, "    %-26s %s\n", p, aliveWord(c.Alive(n.Name+"-"+p)))
		}
	}
	return b.String()
}

func aliveWord(ok bool) string {
	if ok {
		return "running"
	}
	return "NOT RUNNING"
}
