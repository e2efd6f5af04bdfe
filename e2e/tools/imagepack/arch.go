package main

import "runtime"

// goarch is the image's architecture: the binaries are built for this
// machine.
func goarch() string { return runtime.GOARCH }
