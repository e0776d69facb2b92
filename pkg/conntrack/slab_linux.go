//go:build linux && !race

package conntrack

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// slabMaps: shards outgrowing the heap get a mapping (slab.go).
const slabMaps = true

// vmMap maps size bytes of private anonymous memory, aligned to mapAlign,
// and returns the mapping (for vmUnmap) and its aligned start.
// MAP_NORESERVE: the address space is reserved, memory is used only as
// pages are touched (under vm.overcommit_memory=2 the kernel charges it
// all and may refuse; the slab then stays on the heap).
func vmMap(size uintptr) (mem []byte, base unsafe.Pointer, ok bool) {
	mem, err := unix.Mmap(-1, 0, int(size+mapAlign), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, nil, false
	}
	start := uintptr(unsafe.Pointer(&mem[0]))
	return mem, unsafe.Pointer(&mem[roundUp(start, mapAlign)-start]), true
}

// vmUnmap unmaps a slab's mapping: the runtime cleanup of its table.
func vmUnmap(mem []byte) {
	if unix.Munmap(mem) == nil {
		vmMapped.Add(-1)
	}
}

// vmRelease gives the pages of b back to the kernel; they read as zeros
// afterwards.
func vmRelease(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
