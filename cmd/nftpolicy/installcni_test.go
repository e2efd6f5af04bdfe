package main

// install-cni against a temporary CNI configuration and binary directory
// holding Flannel's own conflist.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const flannelConfList = `{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

func installDirs(t *testing.T) (binDir, confDir, plugin string) {
	t.Helper()
	root := t.TempDir()
	binDir, confDir = filepath.Join(root, "bin"), filepath.Join(root, "net.d")
	for _, d := range []string{binDir, confDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plugin = filepath.Join(root, "nftpolicy-cni")
	if err := os.WriteFile(plugin, []byte("#!plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	return binDir, confDir, plugin
}

func pluginTypes(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type       string `json:"type"`
			SocketPath string `json:"socketPath"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	if list.Name != "cbr0" {
		t.Errorf("name = %q: other fields must be kept", list.Name)
	}
	var out []string
	for _, p := range list.Plugins {
		out = append(out, p.Type+p.SocketPath)
	}
	return out
}

func TestInstallCNI(t *testing.T) {
	binDir, confDir, plugin := installDirs(t)
	conf := filepath.Join(confDir, "10-flannel.conflist")
	args := []string{"--plugin", plugin, "--bin-dir", binDir, "--conf-dir", confDir, "--socket", "/run/x/cni.sock"}
	var out, errb bytes.Buffer
	if code := runInstallCNI(args, &out, &errb); code == 0 {
		t.Fatalf("install without a conflist succeeded: %s", out.String())
	}
	if !strings.Contains(errb.String(), "no CNI network configuration list") {
		t.Errorf("stderr %q does not say what is missing", errb.String())
	}
	if err := os.WriteFile(conf, []byte(flannelConfList), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // idempotent
		out.Reset()
		errb.Reset()
		if code := runInstallCNI(args, &out, &errb); code != 0 {
			t.Fatalf("install %d: exit %d: %s", i, code, errb.String())
		}
		want := []string{"flannel", "portmap", "nftpolicy-cni/run/x/cni.sock"}
		if got := pluginTypes(t, conf); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("install %d: plugins %v, want %v", i, got, want)
		}
	}
	if !strings.Contains(out.String(), "changed: false") {
		t.Errorf("second install rewrote the conflist: %s", out.String())
	}
	st, err := os.Stat(filepath.Join(binDir, "nftpolicy-cni"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("plugin binary: %v, mode %v", err, st)
	}
	if code := runInstallCNI(append(args, "--uninstall"), &out, &errb); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errb.String())
	}
	if got := pluginTypes(t, conf); strings.Join(got, ",") != "flannel,portmap" {
		t.Errorf("after uninstall: plugins %v", got)
	}
	if _, err := os.Stat(filepath.Join(binDir, "nftpolicy-cni")); !os.IsNotExist(err) {
		t.Errorf("plugin binary still there after uninstall: %v", err)
	}
}

func TestInstallCNI_SinglePluginConfFirst(t *testing.T) {
	binDir, confDir, plugin := installDirs(t)
	if err := os.WriteFile(filepath.Join(confDir, "05-bridge.conf"), []byte(`{"type":"bridge"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-flannel.conflist"), []byte(flannelConfList), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runInstallCNI([]string{"--plugin", plugin, "--bin-dir", binDir, "--conf-dir", confDir}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "cannot chain") {
		t.Errorf("exit %d, stderr %q: want a refusal naming the single-plugin file", code, errb.String())
	}
}
