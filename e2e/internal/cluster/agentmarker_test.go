package cluster

import "testing"

func TestAgentMarker(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		want   string
	}{
		{"plain command", []string{"/opt/bin/nftpolicy", "--node-name", "n1"}, "nftpolicy"},
		{"env and quoted assignments first", []string{"env", "'NODE_NAME=n1'", "'/opt/bin/nftpolicy'", "'--node-name=n1'"}, "nftpolicy"},
		{"only assignments: fall back to the first word", []string{"A=b"}, "A=b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := agentMarker(tc.fields); got != tc.want {
				t.Errorf("agentMarker(%q) = %q, want %q", tc.fields, got, tc.want)
			}
		})
	}
}
