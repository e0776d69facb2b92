//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "kernel-conntrack-labels: Linux only (it replays captures into a network namespace)")
	os.Exit(1)
}
