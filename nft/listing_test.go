package nft

import "testing"

func TestCanonicalListing(t *testing.T) {
	a := "table inet nftpolicy {\n\tset s1 {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.2,\n\t\t\t     10.0.0.3 }\n\t}\n\n\tchain c1 {\n\t\tdrop\n\t}\n}\n"
	reordered := "table inet nftpolicy {\n\tchain c1 {\n\t\tdrop\n\t}\n\n\tset s1 {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.3,\n\t\t\t     10.0.0.2, 10.0.0.1 }\n\t}\n}\n"
	changed := "table inet nftpolicy {\n\tset s1 {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.4,\n\t\t\t     10.0.0.3 }\n\t}\n\n\tchain c1 {\n\t\tdrop\n\t}\n}\n"
	if CanonicalListing(a) != CanonicalListing(reordered) {
		t.Errorf("block order and element wrapping changed the canonical listing:\n%s\n---\n%s", CanonicalListing(a), CanonicalListing(reordered))
	}
	if CanonicalListing(a) == CanonicalListing(changed) {
		t.Error("a different element left the canonical listing unchanged")
	}
}
