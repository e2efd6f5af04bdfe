package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
)

// cniPluginType is the chained plugin's CNI type and binary name.
const cniPluginType = "nftpolicy-cni"

// runInstallCNI is `nftpolicy install-cni`, the DaemonSet's init container:
// it copies the chained plugin into the node's CNI binary directory and
// appends it to the node's network configuration list (the first .conflist
// in the configuration directory, which is what the container runtime
// uses), replacing an earlier entry of ours. --uninstall takes both out
// again. It fails while there is no .conflist yet (Flannel writes its own
// at start): the kubelet retries the init container.
func runInstallCNI(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("install-cni", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	plugin := fs.String("plugin", "/"+cniPluginType, "the plugin binary to install")
	binDir := fs.String("bin-dir", "/host/opt/cni/bin", "the node's CNI binary directory, as mounted")
	confDir := fs.String("conf-dir", "/host/etc/cni/net.d", "the node's CNI configuration directory, as mounted")
	socket := fs.String("socket", v1alpha1.DefaultCNISocket, "the agent's socket, as a path on the node")
	timeout := fs.String("timeout", "3s", "how long the plugin waits for the agent before letting the pod start anyway (dropped until the agent knows it)")
	uninstall := fs.Bool("uninstall", false, "remove the plugin entry and binary instead")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	conflist, err := firstConfList(*confDir)
	if err != nil {
		fmt.Fprintf(stderr, "nftpolicy install-cni: %v\n", err)
		return 1
	}
	entry := map[string]any{"type": cniPluginType, "socketPath": *socket, "timeout": *timeout}
	if *uninstall {
		entry = nil
	}
	changed, err := setChainEntry(conflist, entry)
	if err != nil {
		fmt.Fprintf(stderr, "nftpolicy install-cni: %v\n", err)
		return 1
	}
	bin := filepath.Join(*binDir, cniPluginType)
	if *uninstall {
		if err := os.Remove(bin); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "nftpolicy install-cni: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "removed %s from %s (changed: %v) and %s\n", cniPluginType, conflist, changed, bin)
		return 0
	}
	if err := copyExecutable(*plugin, bin); err != nil {
		fmt.Fprintf(stderr, "nftpolicy install-cni: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "installed %s; %s chains it (changed: %v)\n", bin, conflist, changed)
	return 0
}

// firstConfList is the network configuration the runtime uses: the first
// file of dir in name order with a CNI configuration extension. Only a
// .conflist can chain plugins.
func firstConfList(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("CNI configuration directory: %w", err)
	}
	for _, e := range entries { // ReadDir sorts by name
		switch filepath.Ext(e.Name()) {
		case ".conflist":
			return filepath.Join(dir, e.Name()), nil
		case ".conf", ".json":
			return "", fmt.Errorf("%s comes first and is a single-plugin configuration, which cannot chain nftpolicy-cni; use a .conflist", filepath.Join(dir, e.Name()))
		}
	}
	return "", fmt.Errorf("no CNI network configuration list in %s yet (Flannel writes 10-flannel.conflist when it starts)", dir)
}

// setChainEntry rewrites the conflist at path so that its plugins end with
// entry (nil: without any nftpolicy-cni entry), keeping every other field
// and plugin as they are. It reports whether the file changed.
func setChainEntry(path string, entry map[string]any) (bool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var list map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	var plugins []json.RawMessage
	if err := json.Unmarshal(list["plugins"], &plugins); err != nil || len(plugins) == 0 {
		return false, fmt.Errorf("%s: no plugins list", path)
	}
	plugins = slices.DeleteFunc(plugins, func(p json.RawMessage) bool {
		var t struct {
			Type string `json:"type"`
		}
		return json.Unmarshal(p, &t) == nil && t.Type == cniPluginType
	})
	if len(plugins) == 0 {
		return false, fmt.Errorf("%s: nftpolicy-cni is its only plugin; it must follow the plugin that gives pods their addresses", path)
	}
	if entry != nil {
		b, err := json.Marshal(entry)
		if err != nil {
			return false, err
		}
		plugins = append(plugins, b)
	}
	if list["plugins"], err = json.Marshal(plugins); err != nil {
		return false, err
	}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return false, err
	}
	out = append(out, '\n')
	var was bytes.Buffer
	if json.Indent(&was, raw, "", "  ") == nil && strings.TrimSpace(was.String()) == strings.TrimSpace(string(out)) {
		return false, nil
	}
	return true, writeAtomically(path, out, 0o644)
}

// copyExecutable copies src to dst (mode 0755) by way of a temporary file
// and a rename, so that the runtime never runs a half-written plugin.
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read plugin: %w", err)
	}
	return writeAtomically(dst, b, 0o755)
}

func writeAtomically(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: not there any more
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}
