package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentTemplate_FromInstallManifest(t *testing.T) {
	got, err := agentTemplate(filepath.Join("..", "..", "..", "dist", "install.yaml"), "/opt/nftpolicy")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"'NODE_NAME={{.Node}}'", "'/opt/nftpolicy'", "'--node-name={{.Node}}'", "--kubeconfig {{.Kubeconfig}}", "--cni-socket {{.CNISocket}}"} {
		if !strings.Contains(got, want) {
			t.Errorf("template %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "$(") {
		t.Errorf("template %q still holds a Kubernetes $(VAR) reference", got)
	}
}
