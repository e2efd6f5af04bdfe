package nft

// Advance is what the Syncer keeps after an incremental batch; it must
// equal a fresh Clone of the desired ruleset. Run the benchmark with
//   go test -run '^$' -bench Advance ./nft/

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// advanceRuleset isolates pods local pods, each admitting peers peers on
// TCP 80, and extra more peers for pod 0.
func advanceRuleset(pods, peers, extra int) *Ruleset {
	r := NewSkeleton()
	for p := range pods {
		var allow AllowList
		n := peers
		if p == 0 {
			n += extra
		}
		for q := range n {
			peer := Addr(netip.AddrFrom4([4]byte{10, 2, byte(q / 250), byte(q%250 + 1)}))
			allow.Ports = append(allow.Ports, PortAllow{Peer: peer, Proto: ProtoTCP, Ports: Port(80)})
		}
		r.AddIsolatedEndpoint(Ingress, fmt.Sprintf("bench/p%d", p), []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(p + 1)})}, allow)
	}
	return r
}

func TestAdvance_EqualsClone(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new *Ruleset
	}{
		{name: "element added", old: advanceRuleset(3, 5, 0), new: advanceRuleset(3, 5, 1)},
		{name: "element removed", old: advanceRuleset(3, 5, 1), new: advanceRuleset(3, 5, 0)},
		{name: "pod added", old: advanceRuleset(2, 5, 0), new: advanceRuleset(3, 5, 0)},
		{name: "pod removed", old: advanceRuleset(3, 5, 0), new: advanceRuleset(2, 5, 0)},
		{name: "from empty", old: NewRuleset(), new: advanceRuleset(2, 5, 0)},
		{name: "unchanged", old: advanceRuleset(2, 5, 0), new: advanceRuleset(2, 5, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last := tc.old.Clone()
			got := Advance(last, Diff(last, tc.new), tc.new)
			if diff := cmp.Diff(tc.new.Clone(), got); diff != "" {
				t.Errorf("Advance (-want +got):\n%s", diff)
			}
			applied, err := Apply(last, Diff(last, tc.new))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(applied, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Advance vs Apply (-want +got):\n%s", diff)
			}
			// No memory shared with desired: changing it leaves got alone.
			for _, s := range tc.new.Sets {
				for i := range s.Elements {
					for j := range s.Elements[i].Key {
						s.Elements[i].Key[j].From[0] ^= 0xff
					}
				}
			}
			if diff := cmp.Diff(applied, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Advance shares memory with desired (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkAdvance(b *testing.B) {
	old, next := advanceRuleset(110, 1500, 0), advanceRuleset(110, 1500, 1)
	last := old.Clone()
	ops := Diff(last, next)
	b.Run("advance", func(b *testing.B) {
		for b.Loop() {
			Advance(last, ops, next)
		}
	})
	b.Run("clone", func(b *testing.B) {
		for b.Loop() {
			next.Clone()
		}
	})
	b.Run("diff-unchanged", func(b *testing.B) {
		same := advanceRuleset(110, 1500, 0)
		for b.Loop() {
			Diff(last, same)
		}
	})
}
