// Command imagepack writes a container image, as a `docker save` tarball
// that `ctr -n k8s.io images import` reads, from files on this machine:
// the local kubelet cluster has no container engine and no registry, so
// its images (nftpolicy, agnhost, pause, busybox) are packed from the static
// binaries the Dockerfile and the upstream image recipes build.
//
//	imagepack -o agnhost.tar -tag registry.k8s.io/e2e-test-images/agnhost:2.63.0 \
//	    -file /agnhost=$BIN/agnhost -entrypoint /agnhost
//
// One layer holds every -file and -symlink; the image config carries the
// entrypoint, default arguments (-cmd), user and labels.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagepack:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagepack", flag.ContinueOnError)
	var tags, files, links, labels, entrypoint, cmd listFlag
	out := fs.String("o", "", "output tarball")
	user := fs.String("user", "", "the image's user (e.g. 0:0)")
	fs.Var(&tags, "tag", "image reference to tag the image with (repeatable)")
	fs.Var(&files, "file", "/path/in/image=host-file (repeatable; mode kept, owner root)")
	fs.Var(&links, "symlink", "/path/in/image=target (repeatable)")
	fs.Var(&labels, "label", "key=value image label (repeatable)")
	fs.Var(&entrypoint, "entrypoint", "one word of the entrypoint (repeatable, in order)")
	fs.Var(&cmd, "cmd", "one word of the default arguments, what a container without command or args runs after the entrypoint (repeatable, in order)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if *out == "" {
		errs = append(errs, errors.New("-o is required"))
	}
	if len(tags) == 0 {
		errs = append(errs, errors.New("at least one -tag is required"))
	}
	if len(files) == 0 {
		errs = append(errs, errors.New("at least one -file is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	layerTar, err := buildLayer(files, links)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg := v1.Config{Entrypoint: entrypoint, Cmd: cmd, User: *user, Labels: map[string]string{},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("-label %q: want key=value", l)
		}
		cfg.Labels[k] = v
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("-tag %q: %w", t, err)
		}
		refs[ref] = img
	}
	if err := tarball.MultiRefWriteToFile(*out, refs); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return nil
}

// buildLayer writes one uncompressed layer: every parent directory, then
// the files and symlinks, in path order so the same input gives the same
// digest.
func buildLayer(files, links []string) ([]byte, error) {
	type entry struct {
		path, src, link string
	}
	var ents []entry
	for _, f := range files {
		dst, src, ok := strings.Cut(f, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("-file %q: want /path/in/image=host-file", f)
		}
		ents = append(ents, entry{path: path.Clean(dst), src: src})
	}
	for _, l := range links {
		dst, target, ok := strings.Cut(l, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("-symlink %q: want /path/in/image=target", l)
		}
		ents = append(ents, entry{path: path.Clean(dst), link: target})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].path < ents[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/": true}
	var mkdirs func(string) error
	mkdirs = func(d string) error {
		if dirs[d] {
			return nil
		}
		if err := mkdirs(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755})
	}
	for _, e := range ents {
		if err := mkdirs(path.Dir(e.path)); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(e.path, "/")
		if e.link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: e.link, Mode: 0o777}); err != nil {
				return nil, err
			}
			continue
		}
		b, err := os.ReadFile(e.src)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(e.src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(b)), Mode: int64(st.Mode().Perm())}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
