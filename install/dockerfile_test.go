package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dockerBuild is the build stage's RUN line, verbatim. The Dockerfile must
// say exactly this, and TestDockerfile_BuildCommand runs it: our machines
// have no container engine, so this is how CI proves the image's build.
const dockerBuild = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o / ./cmd/nftpolicy ./cmd/nftpolicy-cni`

// TestDockerfile_BuildCommand checks that the Dockerfile builds with
// dockerBuild and runs that command (output redirected to a temporary
// directory), then checks the binary: static, carrying the version, and
// knowing every flag the DaemonSet passes.
func TestDockerfile_BuildCommand(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, line := range strings.Split(string(df), "\n") {
		if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "RUN "); ok && strings.Contains(cmd, "go build") {
			runs = append(runs, cmd)
		}
	}
	if len(runs) != 1 || runs[0] != dockerBuild {
		t.Fatalf("Dockerfile go build lines = %q, want exactly [%q]", runs, dockerBuild)
	}
	if !strings.Contains(string(df), "ENTRYPOINT [\"/nftpolicy\"]") {
		t.Error(`Dockerfile: want ENTRYPOINT ["/nftpolicy"] (the DaemonSet's command)`)
	}

	// -short skips the build, except under CI, which must build it.
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("-short: not building the agent")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "nftpolicy")
	const version = "v0.0.0-installtest"
	cmd := exec.Command("/bin/sh", "-c", strings.Replace(dockerBuild, "-o / ", "-o "+dir+"/ ", 1))
	cmd.Dir = root
	// The build stage's environment: VERSION from the build arg, no GOOS/
	// GOARCH (native), module mode read-only.
	cmd.Env = append(os.Environ(), "VERSION="+version, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", dockerBuild, err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("the binary does not contain %q: cmd/nftpolicy has no `var version` for -X main.version", version)
	}
	for _, name := range []string{"nftpolicy", "nftpolicy-cni"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("the build made no %s: %v", name, err)
		}
		if bytes.Contains(b, []byte("/lib64/ld-linux")) || bytes.Contains(b, []byte("/lib/ld-linux")) {
			t.Errorf("%s names a dynamic loader: not static", name)
		}
	}
	if !strings.Contains(string(df), "COPY --from=build /nftpolicy-cni /nftpolicy-cni") {
		t.Error("Dockerfile: the image must ship /nftpolicy-cni (the install-cni init container copies it)")
	}

	// Every flag the DaemonSet passes must exist.
	help, _ := exec.Command(out, "--help").CombinedOutput() // exit status differs between flag packages
	ds := installObjects(t)
	for _, o := range ds {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		containers, _, _ := unstructuredSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			args, _, _ := unstructuredStrings(c, "args")
			for _, a := range args {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !bytes.Contains(help, []byte(name)) {
					t.Errorf("the DaemonSet passes %s, but `nftpolicy --help` does not mention %q:\n%s", a, name, help)
				}
			}
		}
	}
}
