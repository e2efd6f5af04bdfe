package policy

import (
	"sort"

	"go4.org/netipx"

	"github.com/nftpolicy/nftpolicy/nft"
)

// portBoxes collects, per protocol, port ranges with the peers they admit.
// Boxes from different rules may overlap; disjoint folds them into the
// pairwise-disjoint elements an nftables interval set requires.
type portBoxes map[uint8][]portBox

type portBox struct {
	from, to uint16
	peers    *netipx.IPSet
}

func (b portBoxes) add(proto uint8, from, to uint16, peers *netipx.IPSet) {
	if proto == 0 || from > to || len(peers.Ranges()) == 0 {
		return
	}
	b[proto] = append(b[proto], portBox{from: from, to: to, peers: peers})
}

// disjoint cuts each protocol's port axis at every box edge, unions the
// peers over each piece, drops what covered (the any-port peers) already
// admits, and re-joins neighbouring pieces with equal peers. The result is
// the smallest set of disjoint (peer range, protocol, port range) elements
// this simple sweep finds, in a deterministic order.
func (b portBoxes) disjoint(covered *netipx.IPSet) []nft.PortAllow {
	protos := make([]int, 0, len(b))
	for p := range b {
		protos = append(protos, int(p))
	}
	sort.Ints(protos)
	var out []nft.PortAllow
	for _, p := range protos {
		proto := uint8(p)
		for _, piece := range sweep(b[proto], covered) {
			// The piece's elements share its port range and one buffer
			// for their addresses (the model is never modified).
			ports := nft.PortRange(piece.from, piece.to)
			for _, peer := range ipRanges(piece.peers) {
				out = append(out, nft.PortAllow{Peer: peer, Proto: proto, Ports: ports})
			}
		}
	}
	return out
}

// sweep splits boxes into disjoint port pieces with merged peers.
func sweep(boxes []portBox, covered *netipx.IPSet) []portBox {
	// Cut points: every start, and every end+1 (as int to allow 65536).
	cuts := map[int]bool{}
	for _, bx := range boxes {
		cuts[int(bx.from)] = true
		cuts[int(bx.to)+1] = true
	}
	points := make([]int, 0, len(cuts))
	for c := range cuts {
		points = append(points, c)
	}
	sort.Ints(points)
	var pieces []portBox
	for i := 0; i+1 < len(points); i++ {
		from, to := points[i], points[i+1]-1
		var peers netipx.IPSetBuilder
		for _, bx := range boxes {
			if int(bx.from) <= from && to <= int(bx.to) {
				peers.AddSet(bx.peers)
			}
		}
		peers.RemoveSet(covered)
		set, _ := peers.IPSet()
		if len(set.Ranges()) == 0 {
			continue
		}
		last := len(pieces) - 1
		if last >= 0 && int(pieces[last].to)+1 == from && pieces[last].peers.Equal(set) {
			pieces[last].to = uint16(to)
			continue
		}
		pieces = append(pieces, portBox{from: uint16(from), to: uint16(to), peers: set})
	}
	return pieces
}
