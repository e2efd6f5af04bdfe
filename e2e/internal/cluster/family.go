// Address families of the local cluster: ipv4, ipv6 or dual stack, and the
// rule that maps the scenario files' IPv4 pod addresses to IPv6.

package cluster

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Family is one address family.
type Family int

// The two families, by IP version.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return "IPv" + strconv.Itoa(int(f)) }

// Of returns the family of addr.
func Of(addr netip.Addr) Family {
	if addr.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Stack is the cluster's IP family mode (E2E_IP_FAMILY).
type Stack string

// The three modes.
const (
	StackIPv4 Stack = "ipv4"
	StackIPv6 Stack = "ipv6"
	StackDual Stack = "dual"
)

// ParseStack reads an E2E_IP_FAMILY value ("" is ipv4).
func ParseStack(s string) (Stack, error) {
	switch Stack(s) {
	case "":
		return StackIPv4, nil
	case StackIPv4, StackIPv6, StackDual:
		return Stack(s), nil
	}
	return "", fmt.Errorf("E2E_IP_FAMILY=%q: want ipv4, ipv6 or dual", s)
}

// Families are the stack's families, the primary one first (IPv4 in dual
// stack, as on most dual-stack clusters).
func (s Stack) Families() []Family {
	switch s {
	case StackIPv6:
		return []Family{IPv6}
	case StackDual:
		return []Family{IPv4, IPv6}
	}
	return []Family{IPv4}
}

// Has reports whether the stack carries family f.
func (s Stack) Has(f Family) bool {
	for _, g := range s.Families() {
		if g == f {
			return true
		}
	}
	return false
}

// The IPv6 side of the fixed addresses. Each IPv4 address of the pod and
// underlay networks has one IPv6 twin by the rule of MapToIPv6.
const (
	UnderlayGW6  = "fd00:198:18::1"
	ClusterCIDR6 = "fd00:10:244::/48"
	ServiceCIDR6 = "fd00:10:96::/112"
)

// MapToIPv6 is the family-mapping rule of scenario files: an IPv4 address
// A.B.C.D of the pod network (10.244.0.0/16) or of the underlay
// (198.18.0.0/24) maps to fd00:A:B:C::D, the decimal octets written as the
// hexadecimal groups of an IPv6 address (10.244.2.11 → fd00:10:244:2::11,
// 198.18.0.11 → fd00:198:18:0::11). Reading the groups back as decimal
// numbers inverts it; no two IPv4 addresses share a twin. Other addresses
// have no twin (ok=false).
func MapToIPv6(a netip.Addr) (netip.Addr, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}, false
	}
	if !netip.MustParsePrefix(ClusterCIDR).Contains(a) && !netip.MustParsePrefix("198.18.0.0/24").Contains(a) {
		return netip.Addr{}, false
	}
	o := a.As4()
	hex := func(b byte) uint16 { // 244 → 0x244
		v, _ := strconv.ParseUint(strconv.Itoa(int(b)), 16, 16)
		return uint16(v)
	}
	var b [16]byte
	groups := []uint16{0xfd00, hex(o[0]), hex(o[1]), hex(o[2]), 0, 0, 0, hex(o[3])}
	for i, g := range groups {
		b[2*i], b[2*i+1] = byte(g>>8), byte(g)
	}
	return netip.AddrFrom16(b), true
}

// InFamily returns a (an IPv4 address as written in a scenario) in family
// f: a itself for IPv4, its twin by MapToIPv6 for IPv6.
func InFamily(a netip.Addr, f Family) (netip.Addr, error) {
	if Of(a) == f {
		return a, nil
	}
	if f == IPv6 {
		if m, ok := MapToIPv6(a); ok {
			return m, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no %s twin (only 10.244.0.0/16 and 198.18.0.0/24 map)", a, f)
}
