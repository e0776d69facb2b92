package table

import (
	"math/bits"
	"net/netip"
)

// filter4 is a bitmap over the IPv4 address space cut into blocks of
// 2^shift addresses: a block's bit is set when an IPv4 entry overlaps it
// (holds one of its addresses). A lookup whose block bit is clear is a
// miss without a probe.
//
// Why: with the prefixes in hash sets, an IPv4 miss probes the host set
// and each length's set, one cache (and TLB) miss each in a large table.
// BenchmarkMatchTable's misses (1M-entry table, 8 MiB host set and 2 MiB
// /24 set) cost +61 ns over no table with the two probes (median of 6
// runs, 47 to 84), against +32 to +40 when the /24s were in bart, whose
// root ends such misses; with the filter, +21. The
// filter has 8 to 16 blocks an entry, 1 to 2 bytes (2 MiB of /24 blocks
// for 1M entries), so about 7 in 8 random misses stop at one read of it,
// and a miss in space the table does not cover (240.0.0.0/4 in the
// benchmark) reads a line that stays cached. A hit pays the read on top
// of its probes.
//
// Deletes leave bits set: a stale bit costs the probes, never a wrong
// answer. A filter is remade when the deletes since it was made pass
// half the entries, or when the family has grown to need finer blocks.
// Small tables (under minFilter IPv4 entries) have no filter: their sets
// stay in the caches, and the read would only add.
//
// IPv6 has none: its misses probe the host set and the /64 set as IPv4's
// do, which costs less than the bart walk they replaced (1M table: 59-60
// against 70-76 ns), and the address space is too large for a flat map.
type filter4 struct {
	words []uint64 // nil: no filter
	shift uint     // 32 - log2(blocks)
	stale int      // entries deleted since the filter was made
}

const (
	minFilter      = 4096
	maxFilterBlock = 24 // at most 2^24 blocks (2 MiB), /24s
)

// filterBits is log2 of the number of blocks for n entries: 8 to 16 an
// entry, from 2^16 (8 KiB) to 2^24 (2 MiB).
func filterBits(n int) uint {
	return min(maxFilterBlock, uint(bits.Len(uint(n)))+3)
}

func newFilter4(n int) filter4 {
	g := filterBits(n)
	return filter4{words: make([]uint64, 1<<g/64), shift: 32 - g}
}

// mayHave reports whether an entry may hold the address k.
func (f *filter4) mayHave(k uint32) bool {
	if f.words == nil {
		return true
	}
	i := k >> f.shift
	return f.words[i>>6]&(1<<(i&63)) != 0
}

// mark sets the blocks of the prefix of length l at address a (masked).
// Precondition: f is unshared.
func (f *filter4) mark(a uint32, l int) {
	first := a >> f.shift
	n := uint32(1)
	if g := 32 - int(f.shift); l < g {
		n = 1 << (g - l)
	}
	for i := first; i < first+n; i++ { // a /0 sets all 2^24: once, ~10 ms
		f.words[i>>6] |= 1 << (i & 63)
	}
}

// filter4 makes the IPv4 filter of v's entries, or none when they are few.
func (v *version) filter4() filter4 {
	n := v.h4.n + v.p4.size()
	if n < minFilter {
		return filter4{}
	}
	f := newFilter4(n)
	if v.h4.zero {
		f.mark(0, 32)
	}
	for _, k := range v.h4.slots {
		if k != 0 {
			f.mark(k, 32)
		}
	}
	v.p4.each(fam4, func(p netip.Prefix) { f.mark(key4(p.Addr()), p.Bits()) })
	return f
}
