package packet

import "golang.org/x/sys/cpu"

// hasAVX2: sum adds long buffers 32 bytes at a time (sumAVX2).
var hasAVX2 = cpu.X86.HasAVX2

// sumAVX2 is the plain sum of b's 32-bit little-endian words (see
// checksum_amd64.s). Precondition: len(b) is a multiple of 32, at least
// 32, and hasAVX2.
//
//go:noescape
func sumAVX2(b []byte) uint64
