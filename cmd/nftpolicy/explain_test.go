package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestIsPlugin(t *testing.T) {
	for argv0, want := range map[string]bool{
		"/usr/local/bin/kubectl-nftpolicy": true,
		"kubectl-nftpolicy":                true,
		"/nftpolicy":                       false,
		"kubectl-nftpolicy-old":            false,
	} {
		if got := isPlugin(argv0); got != want {
			t.Errorf("isPlugin(%q) = %v, want %v", argv0, got, want)
		}
	}
}

// The input errors: each is said before the API server is contacted, all
// of them at once.
func TestExplain_BadInput(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"nothing asked", nil, []string{"--from and --to are required"}},
		{"every mistake at once", []string{"--from", "x/a", "--to", "x/b:http", "--protocol", "icmp", "-o", "yaml", "--agent-via", "ssh"},
			[]string{`"x/b:http": the port after ':' must be a number`, `--protocol "icmp"`, `-o "yaml"`, `--agent-via "ssh"`}},
		{"stray argument", []string{"--from", "x/a", "--to", "x/b", "extra"}, []string{`unexpected arguments ["extra"]`}},
		{"the API server's node proxy", []string{"--from", "x/a", "--to", "x/b", "--live", "--agent-via", "proxy"},
			[]string{"--agent-via proxy: no longer possible: the API server's node proxy drops the client's credentials"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runArgs(append([]string{"explain"}, tc.args...), noEnv, nil, &stdout, &stderr)
			if code != explainUsage {
				t.Errorf("exit %d, want %d", code, explainUsage)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestPlugin_NeverRunsTheAgent(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runPlugin(nil, func(string) string { return "" }, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "kubectl nftpolicy explain") {
		t.Errorf("kubectl-nftpolicy without a command: exit %d, stderr %q; want usage and exit 2", code, stderr.String())
	}
	stderr.Reset()
	if code := runPlugin([]string{"--node-name", "n1"}, func(string) string { return "" }, &stdout, &stderr); code != 2 {
		t.Errorf("kubectl-nftpolicy with agent flags: exit %d, want 2 (usage)", code)
	}
}
