package conntrack

import "unsafe"

// prefetch asks the CPU to start loading the cache line at p and returns
// at once. It is a hint, not a load: it never faults, so a stale address
// (an index replaced since it was read) costs nothing but the wasted
// fetch, and neither the race detector nor the memory model sees it as an
// access.
//
//go:noescape
func prefetch(p unsafe.Pointer)
