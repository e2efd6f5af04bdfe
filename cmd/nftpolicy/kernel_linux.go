package main

import (
	"context"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/conntrack"
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

// LastReplace is kernel.Syncer.LastReplace as log key-value pairs.
func (h hostKernel) LastReplace() []any {
	st := h.Syncer.LastReplace()
	return []any{"elementsKept", st.ElementsKept, "elementsDeleted", st.ElementsDeleted,
		"elementsAdded", st.ElementsAdded, "setsFlushed", st.SetsFlushed}
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

// newConntrackCleaner opens conntrack over netlink in the host's network
// namespace; the error says why the kernel does not offer it.
func newConntrackCleaner() (controllers.ConntrackCleaner, error) {
	c, err := conntrack.New()
	if err != nil {
		return nil, err
	}
	return conntrackCleaner{c}, nil
}

// conntrackCleaner adapts conntrack.Cleaner to controllers.ConntrackCleaner.
type conntrackCleaner struct{ c *conntrack.Cleaner }

func (a conntrackCleaner) Clean(ctx context.Context, rs *nft.Ruleset) (controllers.ConntrackCleanup, error) {
	res, err := a.c.Clean(ctx, rs)
	return controllers.ConntrackCleanup{Examined: res.Examined, Deleted: res.Deleted}, err
}

// Close releases the netlink sockets.
func (a conntrackCleaner) Close() { a.c.Close() }

// listenNFLOG binds the host's NFLOG group.
func listenNFLOG(group uint16) (nflogReader, error) { return kernel.ListenNFLOG(group) }

// readCounters reads the counters of the host's table with one dump.
func readCounters() ([]nft.RuleCounter, error) { return kernel.ReadCounters() }
