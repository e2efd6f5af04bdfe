// Container images of the kubelet mode, packed on this machine (no
// container engine, no registry) by e2e/tools/imagepack and imported into
// each node's containerd with `ctr -n k8s.io images import`. They carry the
// exact names the manifests and the upstream suites ask for, so that the
// kubelet's IfNotPresent never pulls.

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Upstream image names the kubelet mode provides.
const (
	// PauseImage is containerd's sandbox image: agnhost's pause
	// subcommand, as upstream's own test images do it.
	PauseImage = "registry.k8s.io/pause:3.10.2"
	// AgnhostImage is what k8s.io/kubernetes v1.36's e2e suite runs
	// (test/utils/image/manifest.go).
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.63.0"
	// NPAPIAgnhostImage is what the network-policy-api v0.3.0
	// conformance suite's pods run (conformance/base/manifests.yaml): its
	// servers start through `/bin/bash -c`, and its client containers have
	// no command, so they run the upstream image's default `/agnhost
	// pause`. Packed from the same agnhost build as AgnhostImage (the
	// subcommands and flags the suite uses, serve-hostname, netexec,
	// porter and connect, are the same) plus a static bash.
	NPAPIAgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.45"
	// busyboxBinary is Debian's busybox-static, the shell of the
	// DaemonSet's bridge-netfilter init container.
	busyboxBinary = "/bin/busybox"
	// bashStaticBinary is Debian's bash-static, the /bin/bash of
	// NPAPIAgnhostImage.
	bashStaticBinary = "/bin/bash-static"
)

// image is one image to pack: its names, files and entrypoint.
type image struct {
	file       string // tarball name under StateDir/images
	tags       []string
	files      map[string]string // path in the image -> host file
	links      map[string]string // path in the image -> symlink target
	entrypoint []string
	cmd        []string // default arguments after the entrypoint
	user       string
}

// imagesFor lists the images the cluster needs: agnhost and pause always,
// and every image of the install manifest's DaemonSets.
func (c *Config) imagesFor() ([]image, error) {
	agnhost := c.bin("agnhost")
	imgs := []image{
		{file: "agnhost.tar", tags: []string{AgnhostImage}, files: map[string]string{"/agnhost": agnhost}, entrypoint: []string{"/agnhost"}},
		{file: "pause.tar", tags: []string{PauseImage}, files: map[string]string{"/agnhost": agnhost}, entrypoint: []string{"/agnhost", "pause"}},
		{file: "agnhost-npapi.tar", tags: []string{NPAPIAgnhostImage},
			files:      map[string]string{"/agnhost": agnhost, "/bin/bash": bashStaticBinary},
			entrypoint: []string{"/agnhost"}, cmd: []string{"pause"}},
	}
	if c.Install == "" {
		return imgs, nil
	}
	refs, err := manifestImages(c.Install)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		switch {
		case r.command == "/nftpolicy":
			// The Dockerfile's runtime stage: the two static binaries, uid 0.
			imgs = append(imgs, image{file: "nftpolicy.tar", tags: []string{r.image},
				files: map[string]string{
					"/nftpolicy":     filepath.Join(c.AgentImageBins, "nftpolicy"),
					"/nftpolicy-cni": filepath.Join(c.AgentImageBins, "nftpolicy-cni"),
				}, entrypoint: []string{"/nftpolicy"}, user: "0:0"})
		case strings.Contains(r.image, "/busybox:"):
			links := map[string]string{}
			for _, applet := range []string{"sh", "cat", "echo", "test", "["} {
				links["/bin/"+applet] = "busybox"
			}
			imgs = append(imgs, image{file: "busybox.tar", tags: []string{r.image},
				files: map[string]string{"/bin/busybox": busyboxBinary}, links: links, entrypoint: []string{"/bin/sh"}})
		default:
			return nil, fmt.Errorf("%s: no local recipe for image %s", c.Install, r.image)
		}
	}
	return dedupImages(imgs), nil
}

func dedupImages(imgs []image) []image {
	seen := map[string]bool{}
	var out []image
	for _, im := range imgs {
		if !seen[im.tags[0]] {
			seen[im.tags[0]] = true
			out = append(out, im)
		}
	}
	return out
}

// imageRef is a container image of a manifest and the command its
// container runs.
type imageRef struct{ image, command string }

// manifestImages reads every DaemonSet's container and init container
// images from a multi-document manifest.
func manifestImages(path string) ([]imageRef, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var refs []imageRef
	seen := map[string]bool{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var meta struct{ Kind string }
		if yaml.Unmarshal(doc, &meta) != nil || meta.Kind != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal(doc, &ds); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, ct := range append(append([]corev1.Container{}, ds.Spec.Template.Spec.InitContainers...), ds.Spec.Template.Spec.Containers...) {
			cmd := ""
			if len(ct.Command) > 0 {
				cmd = ct.Command[0]
			}
			if !seen[ct.Image] {
				seen[ct.Image] = true
				refs = append(refs, imageRef{image: ct.Image, command: cmd})
			} else if cmd == "/nftpolicy" {
				for i := range refs {
					if refs[i].image == ct.Image {
						refs[i].command = cmd
					}
				}
			}
		}
	}
	return refs, nil
}

// importImages packs the images (or reuses a packed one whose inputs are
// unchanged) and imports them into every node's containerd, the nodes in
// parallel.
func (c *Config) importImages(ctx context.Context, s *State) error {
	imgs, err := c.imagesFor()
	if err != nil {
		return err
	}
	dir := c.imageDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var tars []string
	for _, im := range imgs {
		tar, err := c.packImage(ctx, dir, im)
		if err != nil {
			return err
		}
		tars = append(tars, tar)
	}
	return importTars(s, tars)
}

// importTars imports image tarballs into every node's containerd, the
// nodes in parallel.
func importTars(s *State, tars []string) error {
	errs := make(chan error, len(s.Nodes))
	for _, n := range s.Nodes {
		go func() {
			for _, tar := range tars {
				if _, err := run("ctr", "--address", n.containerdSocket(), "-n", "k8s.io", "images", "import", tar); err != nil {
					errs <- fmt.Errorf("%s: %w", n.Name, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var all []error
	for range s.Nodes {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// imageDir is where packed tarballs are kept: beside the tools (their
// cache is per tool version), across `up`s, since packing takes a while
// on a loaded machine.
func (c *Config) imageDir() string { return filepath.Join(filepath.Dir(c.BinDir), "images") }

// packImage writes im's tarball into dir, named by a hash of its inputs
// (file names, sizes and times), unless that tarball exists.
func (c *Config) packImage(ctx context.Context, dir string, im image) (string, error) {
	args := []string{}
	for _, t := range im.tags {
		args = append(args, "-tag", t)
	}
	for _, dst := range sortedKeys(im.files) {
		args = append(args, "-file", dst+"="+im.files[dst])
	}
	for _, dst := range sortedKeys(im.links) {
		args = append(args, "-symlink", dst+"="+im.links[dst])
	}
	for _, w := range im.entrypoint {
		args = append(args, "-entrypoint", w)
	}
	for _, w := range im.cmd {
		args = append(args, "-cmd", w)
	}
	if im.user != "" {
		args = append(args, "-user", im.user)
	}
	h := sha256.New()
	fmt.Fprintln(h, strings.Join(args, "\x00"))
	for _, dst := range sortedKeys(im.files) {
		st, err := os.Stat(im.files[dst])
		if err != nil {
			return "", fmt.Errorf("image %s: %w", im.tags[0], err)
		}
		fmt.Fprintln(h, st.Size(), st.ModTime().UnixNano())
	}
	tar := filepath.Join(dir, fmt.Sprintf("%s-%x.tar", strings.TrimSuffix(im.file, ".tar"), h.Sum(nil)[:8]))
	if _, err := os.Stat(tar); err == nil {
		return tar, nil
	}
	tmp := tar + ".tmp"
	if out, err := exec.CommandContext(ctx, c.bin("imagepack"), append([]string{"-o", tmp}, args...)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("imagepack %s: %w: %s", im.tags[0], err, out)
	}
	return tar, os.Rename(tmp, tar)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
