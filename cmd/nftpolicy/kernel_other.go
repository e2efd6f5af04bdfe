//go:build !linux

package main

import "errors"

var errNotLinux = errors.New("nftables needs Linux")

func newKernelSyncer() (kernelSyncer, error) { return nil, errNotLinux }

func cleanupKernel() error { return errNotLinux }
