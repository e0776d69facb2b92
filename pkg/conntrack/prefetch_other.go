//go:build !amd64

package conntrack

import "unsafe"

// prefetch is a no-op where there is no assembly for it: Prefetch then
// only costs the hashing.
func prefetch(p unsafe.Pointer) {}
