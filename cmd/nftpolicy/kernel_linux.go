package main

import "github.com/nftpolicy/nftpolicy/nft/kernel"

// newKernelSyncer opens the host's nftables (the agent runs with
// hostNetwork, so its network namespace is the node's).
func newKernelSyncer() (kernelSyncer, error) { return kernel.NewSyncer() }

// cleanupKernel deletes table inet nftpolicy.
func cleanupKernel() error { return kernel.Cleanup() }
