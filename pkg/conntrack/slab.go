package conntrack

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// The slab: a shard's entries in one array, entry i at base + 128*i, so
// that an entry's address is a multiply-add on its index. (A directory of
// 128-entry chunks, before, cost a dependent load per lookup, in Prefetch
// and again in Track. Without it, at 1M connections, binaries alternated
// on the development VM: BenchmarkStatefulKnown 243 instead of 292 ns
// (medians of 5), the harness's stateful mix 319 instead of 382 (of 3);
// bench/results/performance.md, "Offline (session 6)".)
//
// A small shard's slab is a Go array that grows 8 KiB at a time, entries
// copied, up to mapMinEntries (64 KiB). A shard that outgrows it moves,
// once, into a private anonymous mapping of the address space for every
// entry it may ever hold (min(limit, maxShardEntries) entries and a
// little slack), reserved, not committed: the kernel backs a page only
// once an entry in it has been used, so the memory is the entries used,
// to the page, and the slab never moves or copies again while the shard
// grows. It is never unmapped while the table lives: compaction moves the
// live entries down in place and gives the pages above them back
// (MADV_DONTNEED), which then read as zeros, so a Prefetch holding an old
// view still reads mapped memory.
//
// The mapping is 2 MiB aligned, so that a kernel set to back anonymous
// memory with transparent huge pages (transparent_hugepage=always) can.
// statewall does not ask for them (MADV_HUGEPAGE): on the development VM
// the flat slab made them pay nothing more (BenchmarkStatefulKnown at 1M
// connections, both kinds of table in one process, alternated: 203.5 ns
// with huge pages, 205.7 without; the harness's mix 318 and 319), and
// they would hold up to 2 MiB per shard that no entry uses.
//
// The Go runtime does not see the mapping: not in runtime.MemStats (see
// Table.MappedBytes), not scanned (entries hold no pointers), and not by
// the race detector, which watches only Go's memory: under -race slabs
// stay on the heap (slab_other.go), so the race tests see every entry
// access. A runtime cleanup unmaps it once no shard of the table is
// reachable.

const (
	entrySize = unsafe.Sizeof(entry{})

	// slabMin is the first heap array and its growth step: 64 entries,
	// 8 KiB. Every heap slab is a multiple of it, which the allocator
	// places page aligned (its size classes from 8 KiB to 32 KiB are
	// multiples of 8 KiB, and larger objects get pages of their own), so
	// every entry is exactly two cache lines.
	slabMin = 64

	// mapMinEntries: a shard's slab becomes a mapping when it needs more
	// entries than this (64 KiB of them). Below it a heap array costs
	// little to double; a mapping costs a system call, an entry in the
	// process's memory map and a cleanup.
	mapMinEntries = 512

	// mapAlign aligns a mapping, for huge pages (2 MiB on x86-64).
	mapAlign = 2 << 20

	pageSize = 4096
)

// vmMapped counts the slab mappings alive, for tests.
var vmMapped atomic.Int64

// at returns entry i. Precondition: i < s.cap (i is an index that alloc
// handed out).
func (s *shard) at(i uint32) *entry {
	return (*entry)(unsafe.Add(s.base, uintptr(i)*entrySize))
}

// slab returns the entries handed out so far, [0, used).
func (s *shard) slab() []entry {
	if s.base == nil {
		return nil
	}
	return unsafe.Slice((*entry)(s.base), s.used)
}

// grow makes room for at least one more entry at the end of the slab; it
// reports false when the slab is a mapping, which was sized for every
// entry the shard may hold.
func (s *shard) grow() bool {
	if s.mapping != nil {
		return false
	}
	// Up to mapMinEntries the heap array grows 8 KiB at a time, so that
	// it wastes no more than the 16 KiB chunks of before did (doubling
	// took the harness's 10k-flow tables, 273 entries a shard, from 179
	// to 231 bytes an entry); a few copies of at most 64 KiB. Past it, a
	// mapping; without one (another platform, the race detector, an
	// address-space limit, strict overcommit) the array doubles.
	n := int(s.cap) + slabMin
	if s.cap >= mapMinEntries {
		if s.mapSlab() {
			return true
		}
		n = 2 * int(s.cap)
	}
	a := make([]entry, n)
	copy(a, s.slab())
	s.base, s.cap = unsafe.Pointer(&a[0]), uint32(n)
	s.publish()
	return true
}

// mapSlab moves the slab into a mapping sized for every entry the shard
// may hold; false if none could be made.
func (s *shard) mapSlab() bool {
	// At most limit entries are live, plus what concurrent Commits let in
	// before they evict: a mapAlign of slack covers them.
	size := roundUp(uintptr(s.slabMax)*entrySize+mapAlign, mapAlign)
	mem, base, ok := vmMap(size)
	if !ok {
		return false
	}
	copy(unsafe.Slice((*entry)(base), s.used), s.slab())
	s.base, s.cap = base, uint32(min(size/entrySize, maxShardEntries+1))
	s.mapping = mem
	vmMapped.Add(1)
	// The shards are one allocation: the cleanup runs once no shard of the
	// table is reachable. Nothing holds an entry's address beyond the
	// shard lock that guards it, and holding that lock needs the shard.
	runtime.AddCleanup(s, vmUnmap, mem)
	s.publish()
	return true
}

// compactSlab moves the live entries to the front of the slab, updating
// their slots, and lets the rest go: to a smaller heap array, or for a
// mapping in place, the pages above the live entries given back.
func (s *shard) compactSlab() {
	if s.mapping != nil {
		s.compactMapped()
		return
	}
	if s.n == 0 {
		s.base, s.cap, s.used, s.free = nil, 0, 0, 0
		s.publish()
		return
	}
	a := make([]entry, roundUp(uintptr(s.n), slabMin))
	j := uint32(0)
	for i, sl := range s.slots {
		if sl == 0 {
			continue
		}
		a[j] = *s.at(sl&refMask - 1)
		atomic.StoreUint32(&s.slots[i], sl&^refMask|(j+1))
		j++
	}
	s.base, s.cap, s.used, s.free = unsafe.Pointer(&a[0]), uint32(len(a)), j, 0
	s.publish()
}

// compactMapped compacts a mapped slab in place: each live entry at n or
// above moves into a hole below n (there are exactly as many holes as
// such entries), and the pages above the live entries go back to the
// kernel. A Prefetch may meanwhile load an entry's old place: a wasted
// prefetch.
func (s *shard) compactMapped() {
	n := s.n
	below := make([]uint64, (n+63)/64) // the live entries under n
	for _, sl := range s.slots {
		if x := sl&refMask - 1; sl != 0 && x < n {
			below[x/64] |= 1 << (x % 64)
		}
	}
	hole := uint32(0)
	for i, sl := range s.slots {
		x := sl&refMask - 1
		if sl == 0 || x < n {
			continue
		}
		for below[hole/64]&(1<<(hole%64)) != 0 {
			hole++
		}
		*s.at(hole) = *s.at(x)
		below[hole/64] |= 1 << (hole % 64)
		atomic.StoreUint32(&s.slots[i], sl&^refMask|(hole+1))
	}
	from, to := residentBytes(n), residentBytes(s.used)
	s.used, s.free = n, 0
	if to > from {
		vmRelease(unsafe.Slice((*byte)(unsafe.Add(s.base, from)), to-from))
	}
}

// residentBytes is how much of a mapped slab the kernel backs once its
// first n entries have been used.
func residentBytes(n uint32) uintptr { return roundUp(uintptr(n)*entrySize, pageSize) }

// MappedBytes returns the memory the table holds outside the Go heap,
// which runtime.MemStats does not count: the slabs of the shards grown
// past 64 KiB of entries (slab.go), to the page.
func (t *Table) MappedBytes() int64 {
	var b int64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if s.mapping != nil {
			b += int64(residentBytes(s.used))
		}
		s.mu.Unlock()
	}
	return b
}

func roundUp(n, to uintptr) uintptr { return (n + to - 1) / to * to }
