// Package nfttest is test support for code that hands rulesets to a
// dataplane: FakeSyncer keeps the contract of kernel.Syncer without a
// kernel, Apply plays a list of nft.Diff operations the way one netlink
// batch would, and Validate finds what the kernel would refuse in a
// ruleset. Product code never imports it.
package nfttest
