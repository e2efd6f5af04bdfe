package cluster

import "testing"

func TestInstance(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
		prefix  string
		api     int
		state   string
	}{
		{in: "", prefix: "nftpe2e-", api: 16443, state: "/run/nftpolicy-e2e"},
		{in: "0", prefix: "nftpe2e-", api: 16443, state: "/run/nftpolicy-e2e"},
		{in: "3", prefix: "nftpe2e3-", api: 16743, state: "/run/nftpolicy-e2e-3"},
		{in: "10", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1x", wantErr: true},
		{in: "01", wantErr: true},
	} {
		i, err := ParseInstance(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseInstance(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if got := i.NSPrefix(); got != tc.prefix {
			t.Errorf("instance %q: NSPrefix %q, want %q", tc.in, got, tc.prefix)
		}
		if got := i.APIPort(); got != tc.api {
			t.Errorf("instance %q: APIPort %d, want %d", tc.in, got, tc.api)
		}
		if got := i.DefaultStateDir(); got != tc.state {
			t.Errorf("instance %q: DefaultStateDir %q, want %q", tc.in, got, tc.state)
		}
	}
}
