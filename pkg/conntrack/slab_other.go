//go:build !linux || race

package conntrack

import "unsafe"

// Elsewhere than Linux, and under the race detector (which watches only
// Go's memory), slabs stay on the Go heap (slab.go).
const slabMaps = false

func vmMap(size uintptr) (mem []byte, base unsafe.Pointer, ok bool) { return nil, nil, false }

func vmUnmap(mem []byte) {}

func vmRelease(b []byte) {}
