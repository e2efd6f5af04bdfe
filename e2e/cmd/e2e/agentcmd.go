package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nftpolicy/nftpolicy/e2e/internal/manifest"
)

// agentTemplate builds the per-node agent command template from the
// DaemonSet in the install manifest, so the local cluster runs the agent
// with exactly the arguments and environment users install. The one
// addition is --kubeconfig: a node namespace has no in-cluster service
// account mount, so the agent is pointed at the node's kubeconfig instead.
func agentTemplate(installPath, bin string) (string, error) {
	if bin == "" {
		return "", errors.New("--bin is required")
	}
	data, err := os.ReadFile(installPath)
	if err != nil {
		return "", fmt.Errorf("read manifest: %w", err)
	}
	args, env, err := manifest.AgentCommand(data)
	if err != nil {
		return "", err
	}
	// Values the kubelet would provide from the downward API.
	fromNode := map[string]string{"NODE_NAME": "{{.Node}}"}
	values := map[string]string{}
	words := []string{"env"}
	for _, e := range env {
		name, value, literal := strings.Cut(e, "=")
		if !literal {
			v, ok := fromNode[name]
			if !ok {
				return "", fmt.Errorf("agent env %s comes from the API and the local cluster cannot provide it", name)
			}
			value = v
		}
		values[name] = value
		words = append(words, shellQuote(name+"="+value))
	}
	expanded, err := manifest.Expand(args, values)
	if err != nil {
		return "", err
	}
	words = append(words, shellQuote(bin))
	for _, a := range expanded {
		words = append(words, shellQuote(a))
	}
	// The node namespaces share one file system: each agent gets the
	// node's own socket for the chained CNI plugin (the kubelet harness
	// configures the plugin with the same path).
	words = append(words, "--kubeconfig", "{{.Kubeconfig}}", "--cni-socket", "{{.CNISocket}}")
	return strings.Join(words, " "), nil
}

// shellQuote quotes s for /bin/sh, which runs the template.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
