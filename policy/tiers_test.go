package policy

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAddrKey_Arithmetic(t *testing.T) {
	k := func(s string) addrKey { return keyOf(netip.MustParseAddr(s)) }
	for _, tc := range []struct{ a, next string }{
		{"10.0.0.255", "10.0.1.0"},
		{"fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::"},
		{"::ffff:ffff:ffff:ffff", "0:0:0:1::"},
	} {
		if got := k(tc.a).Next(); got != k(tc.next) {
			t.Errorf("%s.Next() = %v, want %s", tc.a, got, tc.next)
		}
		if got := k(tc.next).Prev(); got != k(tc.a) {
			t.Errorf("%s.Prev() = %v, want %s", tc.next, got, tc.a)
		}
		if got, _ := netip.AddrFromSlice(k(tc.a).bytes()); got != netip.MustParseAddr(tc.a) {
			t.Errorf("bytes of %s give %s", tc.a, got)
		}
	}
	for _, last := range []string{"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if k(last).Next().IsValid() {
			t.Errorf("%s.Next() is valid, want past the family", last)
		}
	}
	if !k("255.255.255.255").Less(k("::")) {
		t.Error("IPv4 must sort before IPv6")
	}
}

// TestFirstMatch: the earlier rule wins where ranges overlap, across the
// end of the IPv4 space and into IPv6.
func TestFirstMatch(t *testing.T) {
	r := func(from, to string, rule int) paintRange {
		return paintRange{keyOf(netip.MustParseAddr(from)), keyOf(netip.MustParseAddr(to)), rule}
	}
	got := firstMatch([]paintRange{
		r("10.0.0.0", "255.255.255.255", 2),
		r("10.0.0.5", "10.0.0.9", 0),
		r("10.0.0.8", "10.0.1.0", 1),
		r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1),
		r("fd00::", "fd00::ffff", 0),
	})
	want := []paintRange{
		r("10.0.0.0", "10.0.0.4", 2),
		r("10.0.0.5", "10.0.0.9", 0),
		r("10.0.0.10", "10.0.1.0", 1),
		r("10.0.1.1", "255.255.255.255", 2),
		r("::", "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1),
		r("fd00::", "fd00::ffff", 0),
		r("fd00::1:0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1),
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(paintRange{}, addrKey{})); diff != "" {
		t.Errorf("firstMatch (-want +got):\n%s", diff)
	}
}
