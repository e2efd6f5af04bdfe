package policy

import "github.com/nftpolicy/nftpolicy/nft"

// Compile builds the desired nftables ruleset of snap.NodeName.
// TODO(compile): being written; returns the skeleton only.
func Compile(snap *Snapshot) (*nft.Ruleset, []Warning) {
	return nft.NewSkeleton(), nil
}
