package cluster

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The kubelet mode packs every image of the release manifest locally: a
// new or renamed image in config/ must come with a recipe here, or `make
// up E2E_KUBELET=1` fails before any node starts.
func TestImagesFor_ReleaseManifest(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	install := filepath.Join(filepath.Dir(self), "..", "..", "..", "dist", "install.yaml")
	refs, err := manifestImages(install)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) == 0 {
		t.Fatalf("%s: no DaemonSet images found", install)
	}
	c := &Config{BinDir: "/tools", Install: install, AgentImageBins: "/agent"}
	imgs, err := c.imagesFor()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, im := range imgs {
		got[im.tags[0]] = im.entrypoint
	}
	for _, r := range refs {
		if _, ok := got[r.image]; !ok {
			t.Errorf("manifest image %s is not packed", r.image)
		}
	}
	if diff := cmp.Diff([]string{"/agnhost", "pause"}, got[PauseImage]); diff != "" {
		t.Errorf("pause entrypoint (-want +got):\n%s", diff)
	}
	var agent *image
	for i := range imgs {
		if imgs[i].files["/nftpolicy"] != "" {
			agent = &imgs[i]
		}
	}
	if agent == nil {
		t.Fatal("no image carries /nftpolicy")
	}
	want := map[string]string{"/nftpolicy": "/agent/nftpolicy", "/nftpolicy-cni": "/agent/nftpolicy-cni"}
	if diff := cmp.Diff(want, agent.files); diff != "" {
		t.Errorf("agent image files (-want +got):\n%s", diff)
	}
	if agent.user != "0:0" {
		t.Errorf("agent image user %q, want 0:0 as the Dockerfile says", agent.user)
	}
}

func TestImagesFor_UnknownImage(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "m.yaml")
	writeFile(t, manifest, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: x}
spec:
  template:
    spec:
      containers:
      - name: c
        image: example.com/unknown:1
`)
	_, err := (&Config{BinDir: "/tools", Install: manifest}).imagesFor()
	if err == nil {
		t.Fatal("an image without a local recipe was accepted")
	}
}

// The network-policy-api suite's pods start their servers with /bin/bash
// -c and leave the client containers without a command: the image needs a
// bash and the upstream default arguments, pause.
func TestImagesFor_NPAPIAgnhost(t *testing.T) {
	c := &Config{BinDir: "/tools"}
	imgs, err := c.imagesFor()
	if err != nil {
		t.Fatal(err)
	}
	var got *image
	for i := range imgs {
		if imgs[i].tags[0] == NPAPIAgnhostImage {
			got = &imgs[i]
		}
	}
	if got == nil {
		t.Fatalf("%s is not packed", NPAPIAgnhostImage)
	}
	want := image{file: "agnhost-npapi.tar", tags: []string{NPAPIAgnhostImage},
		files:      map[string]string{"/agnhost": "/tools/agnhost", "/bin/bash": bashStaticBinary},
		entrypoint: []string{"/agnhost"}, cmd: []string{"pause"}}
	if diff := cmp.Diff(want, *got, cmp.AllowUnexported(image{})); diff != "" {
		t.Errorf("%s (-want +got):\n%s", NPAPIAgnhostImage, diff)
	}
}
