package main

// The plugin against a real unix socket served by cniapi.Handler, with the
// agent's side (the announce function) played by each test. Pod addresses:
// 10.244.1.30/24 from flannel's prevResult.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/cniapi"
)

const prevResult = `{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[{"version":"4","address":"10.244.1.30/24","gateway":"10.244.1.1","interface":0}],"dns":{}}`

func conf(socket, timeout string) string {
	return `{"cniVersion":"0.3.1","name":"cbr0","type":"nftpolicy-cni","socketPath":"` + socket + `","timeout":"` + timeout + `","prevResult":` + prevResult + `}`
}

func env(command string) func(string) string {
	vars := map[string]string{
		"CNI_COMMAND": command,
		"CNI_ARGS":    "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
	}
	return func(k string) string { return vars[k] }
}

// serveAgent serves announce on a fresh socket until the test ends.
func serveAgent(t *testing.T, announce cniapi.AnnounceFunc) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cni.sock")
	l, err := cniapi.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: cniapi.Handler(announce, 10*time.Second), ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return path
}

func runPlugin(t *testing.T, command, stdin string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(env(command), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAdd_AgentConfirms(t *testing.T) {
	var mu sync.Mutex
	var got []string
	socket := serveAgent(t, func(_ context.Context, ns, name string, ips []netip.Addr) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ns+"/"+name+" "+ips[0].String())
		return nil
	})
	code, out, stderr := runPlugin(t, "ADD", conf(socket, "5s"))
	if code != 0 || out != prevResult {
		t.Fatalf("exit %d, stdout %q (want prevResult unchanged), stderr %q", code, out, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr %q, want nothing on success", stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"shop/web-0 10.244.1.30"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("agent got %q, want %q", got, want)
	}
}

// The agent is down: no socket. Pod creation goes on at once.
func TestAdd_AgentDownStillSucceeds(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	code, out, stderr := runPlugin(t, "ADD", conf(socket, "5s"))
	if code != 0 || out != prevResult {
		t.Fatalf("exit %d, stdout %q, stderr %q; want success with prevResult", code, out, stderr)
	}
	if !strings.Contains(stderr, "stays isolated") {
		t.Errorf("stderr %q does not say what happens to the pod", stderr)
	}
}

// The agent accepts but never confirms (stuck, or its syncs fail): the
// plugin gives up at its timeout, succeeds, and the agent sees the request
// end.
func TestAdd_AgentHangsBoundedWait(t *testing.T) {
	ended := make(chan error, 1)
	socket := serveAgent(t, func(ctx context.Context, _, _ string, _ []netip.Addr) error {
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	})
	code, out, stderr := runPlugin(t, "ADD", conf(socket, "200ms"))
	if code != 0 || out != prevResult {
		t.Fatalf("exit %d, stdout %q, stderr %q; want success with prevResult", code, out, stderr)
	}
	if !strings.Contains(stderr, "did not confirm") {
		t.Errorf("stderr %q does not report the missing confirmation", stderr)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("agent's wait ended with %v, want the client's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the agent's wait did not end when the plugin gave up")
	}
}

func TestAdd_AgentRefusesStillSucceeds(t *testing.T) {
	socket := serveAgent(t, func(context.Context, string, string, []netip.Addr) error {
		return errors.New("announce pod shop/web-0: no addresses")
	})
	code, out, stderr := runPlugin(t, "ADD", conf(socket, "5s"))
	if code != 0 || out != prevResult || !strings.Contains(stderr, "no addresses") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestAdd_BadConfiguration(t *testing.T) {
	cases := []struct {
		name, stdin string
		code        int
	}{
		{"not chained", `{"cniVersion":"0.3.1","name":"cbr0","type":"nftpolicy-cni"}`, codeInvalidConfig},
		{"bad timeout", strings.Replace(conf("/x", "5s"), `"5s"`, `"forever"`, 1), codeInvalidConfig},
		{"timeout too long", conf("/x", "10m"), codeInvalidConfig},
		{"not JSON", `{`, codeDecodeFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _ := runPlugin(t, "ADD", tc.stdin)
			var e cniError
			if err := json.Unmarshal([]byte(out), &e); err != nil || code == 0 || e.Code != tc.code || e.Msg == "" {
				t.Errorf("exit %d, stdout %q: want a CNI error with code %d", code, out, tc.code)
			}
		})
	}
}

func TestOtherCommandsPassThrough(t *testing.T) {
	for _, cmd := range []string{"DEL", "CHECK", "GC", "STATUS"} {
		if code, out, _ := runPlugin(t, cmd, conf("/nonexistent/cni.sock", "5s")); code != 0 || out != "" {
			t.Errorf("%s: exit %d, stdout %q; want 0 and nothing", cmd, code, out)
		}
	}
	code, out, _ := runPlugin(t, "VERSION", "")
	var v struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || len(v.SupportedVersions) == 0 {
		t.Errorf("VERSION: exit %d, stdout %q", code, out)
	}
}
