//go:build !linux

package main

import (
	"errors"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft"
)

var errNotLinux = errors.New("nftables needs Linux")

func newKernelSyncer() (kernelSyncer, error) { return nil, errNotLinux }

func cleanupKernel() error { return errNotLinux }

func newConntrackCleaner() (controllers.ConntrackCleaner, error) { return nil, errNotLinux }
func listenNFLOG(uint16) (nflogReader, error)                    { return nil, errNotLinux }
func readCounters() ([]nft.RuleCounter, error)                   { return nil, errNotLinux }
