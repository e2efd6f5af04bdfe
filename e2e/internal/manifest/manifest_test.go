package manifest

// No IP plan: these tests read YAML only.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readInstall(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "dist", "install.yaml"))
	if err != nil {
		t.Fatalf("read dist/install.yaml (make manifests): %v", err)
	}
	return b
}

// TestAgentCommand_InstallYAML pins what the e2e cluster will run: if the
// DaemonSet changes, this test shows how, and the e2e cluster follows.
func TestAgentCommand_InstallYAML(t *testing.T) {
	args, env, err := AgentCommand(readInstall(t))
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"--node-name=$(NODE_NAME)", "--metrics-bind-address=:9808", "--metrics-secure=true", "--health-probe-bind-address=:9809", "--cni-socket=/run/nftpolicy/cni.sock"}
	if diff := cmp.Diff(wantArgs, args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"NODE_NAME"}, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	got, err := Expand(args, map[string]string{"NODE_NAME": "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "--node-name=node-1" {
		t.Errorf("expanded node name: got %q", got[0])
	}
	t.Logf("agent: %s %s (env %s)", ImageBinary, strings.Join(args, " "), strings.Join(env, " "))
}

const dsTemplate = `apiVersion: v1
kind: Namespace
metadata:
  name: x
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %s
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      initContainers:
      - name: init
        image: busybox
        command: [/bin/sh]
      containers:
      - name: other
        image: x
      - name: agent
        image: nftpolicy
%s
`

func TestAgentCommand(t *testing.T) {
	tests := []struct {
		name      string
		dsName    string
		container string
		wantArgs  []string
		wantEnv   []string
		wantErr   string
	}{
		{
			name:   "command and args, literal and downward-API env",
			dsName: DaemonSetName,
			container: `        command: [/nftpolicy, run]
        args: [--node-name=$(NODE_NAME), --v=1]
        env:
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: GODEBUG, value: "madvdontneed=1"}`,
			wantArgs: []string{"run", "--node-name=$(NODE_NAME)", "--v=1"},
			wantEnv:  []string{"NODE_NAME", "GODEBUG=madvdontneed=1"},
		},
		{
			name:      "no command: the image's entrypoint",
			dsName:    DaemonSetName,
			container: `        args: [--x]`,
			wantArgs:  []string{"--x"},
		},
		{
			name:      "another binary",
			dsName:    DaemonSetName,
			container: `        command: [/bin/sh, -c, nftpolicy]`,
			wantErr:   "not the agent binary",
		},
		{
			name:      "envFrom",
			dsName:    DaemonSetName,
			container: `        envFrom: [{configMapRef: {name: x}}]`,
			wantErr:   "envFrom",
		},
		{
			name:      "no agent DaemonSet",
			dsName:    "someone-else",
			container: `        args: [--x]`,
			wantErr:   "no apps/v1 DaemonSet called nftpolicy-agent",
		},
		{
			name:      "unknown field",
			dsName:    DaemonSetName,
			container: `        argz: [--x]`,
			wantErr:   "unknown field",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(strings.Replace(dsTemplate, "%s", tt.dsName, 1), "%s", tt.container, 1)
			args, env, err := AgentCommand([]byte(doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantArgs, args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEnv, env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vals := map[string]string{"NODE_NAME": "n1", "A": "x"}
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "reference", in: []string{"--node-name=$(NODE_NAME)"}, want: []string{"--node-name=n1"}},
		{name: "two references", in: []string{"$(A)-$(NODE_NAME)"}, want: []string{"x-n1"}},
		{name: "escaped", in: []string{"$$(A)", "a$$b"}, want: []string{"$(A)", "a$b"}},
		{name: "lone dollar", in: []string{"$x", "end$"}, want: []string{"$x", "end$"}},
		{name: "unclosed", in: []string{"$(A"}, want: []string{"$(A"}},
		{name: "missing value", in: []string{"$(NOPE)"}, wantErr: "no value for $(NOPE)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.in, vals)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
