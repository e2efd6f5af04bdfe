package main

import (
	"context"

	"github.com/nftpolicy/nftpolicy/nft/kernel"
)

// hostKernel is nft/kernel's Syncer with the table monitor as the agent
// uses it.
type hostKernel struct{ *kernel.Syncer }

// newKernelSyncer opens the host's nftables (the agent runs with
// hostNetwork, so its network namespace is the node's).
func newKernelSyncer() (kernelSyncer, error) {
	s, err := kernel.NewSyncer()
	if err != nil {
		return nil, err
	}
	return hostKernel{s}, nil
}

// WatchTable subscribes to nftables' change notifications and reports the
// foreign changes to our table until ctx is done.
func (h hostKernel) WatchTable(ctx context.Context, onChange func(reason string)) error {
	m, err := h.Monitor()
	if err != nil {
		return err
	}
	return m.Run(ctx, func(c kernel.ForeignChange) { onChange(c.String()) })
}

// cleanupKernel deletes table inet nftpolicy.
func cleanupKernel() error { return kernel.Cleanup() }
