package cluster

import (
	"net/netip"
	"testing"
)

func TestMapToIPv6(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.244.2.11", "fd00:10:244:2::11"},
		{"10.244.1.255", "fd00:10:244:1::255"},
		{"10.244.3.0", "fd00:10:244:3::"},
		{"198.18.0.11", "fd00:198:18::11"},
		{"192.168.1.1", ""},
		{"fd00::1", ""},
	} {
		got, ok := MapToIPv6(netip.MustParseAddr(tc.in))
		if tc.want == "" {
			if ok {
				t.Errorf("MapToIPv6(%s) = %s, want no twin", tc.in, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("MapToIPv6(%s) = %s, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
	// The twins of distinct addresses are distinct.
	seen := map[netip.Addr]netip.Addr{}
	for c := 0; c < 256; c++ {
		for d := 0; d < 256; d++ {
			a := netip.AddrFrom4([4]byte{10, 244, byte(c), byte(d)})
			m, _ := MapToIPv6(a)
			if prev, dup := seen[m]; dup {
				t.Fatalf("%s and %s share the twin %s", prev, a, m)
			}
			seen[m] = a
		}
	}
}

func TestParseStack(t *testing.T) {
	for in, want := range map[string][]Family{"": {IPv4}, "ipv4": {IPv4}, "ipv6": {IPv6}, "dual": {IPv4, IPv6}} {
		s, err := ParseStack(in)
		if err != nil || len(s.Families()) != len(want) || s.Families()[0] != want[0] {
			t.Errorf("ParseStack(%q) = %v %v, want %v", in, s.Families(), err, want)
		}
	}
	if _, err := ParseStack("ipv5"); err == nil {
		t.Error("ParseStack(ipv5) should fail")
	}
}
