// The scenario runner's own image in kubelet mode: our podserver packed
// from a static binary, imported into every node once per run.

package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ImportPodserverImage packs the static podserver binary bin into a
// one-file image (entrypoint /podserver) and imports it into every
// node's containerd. The tag carries a hash of the binary, so a rebuilt
// podserver gets a new name and no node can run a stale one; packing is
// skipped when that tarball exists. It returns the tag.
func (c *Config) ImportPodserverImage(ctx context.Context, s *State, bin string) (string, error) {
	if !s.Kubelet {
		return "", errors.New("the cluster runs no kubelets: pods are the harness's, not images")
	}
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("podserver image: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("podserver image: %w", err)
	}
	tag := fmt.Sprintf("%s:%x", PodserverImageRepo, h.Sum(nil)[:6])
	dir := c.imageDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tar, err := c.packImage(ctx, dir, image{file: "podserver.tar", tags: []string{tag},
		files: map[string]string{"/podserver": bin}, entrypoint: []string{"/podserver"}})
	if err != nil {
		return "", err
	}
	return tag, importTars(s, []string{tar})
}

// PodserverImageRepo names the podserver image; no registry serves it, so
// pods that run it say imagePullPolicy: Never.
const PodserverImageRepo = "e2e.nftpolicy.io/podserver"

// PodControlDir is the host directory whose podserver control sockets the
// runner dials in kubelet mode: each scenario pod mounts it (hostPath)
// and listens there, so the runner reaches a pod without the network
// under test, as in harness mode.
func (c *Config) PodControlDir() string { return filepath.Join(c.StateDir, "kpods") }
