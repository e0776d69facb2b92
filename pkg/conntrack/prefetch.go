package conntrack

import (
	"sync/atomic"
	"unsafe"

	"github.com/statewall/statewall/pkg/packet"
)

// Batches. A lookup in a table larger than the CPU caches costs two
// dependent cache misses, the index slot and then the entry, 110-210 ns
// each on the development VM (BenchmarkMemoryLatency): one packet at a
// time, a table of 100k
// connections cannot go faster than that, whatever the code does. The
// misses of different packets are independent, though, and the CPU can
// wait for ten of them at once. Prefetch is the batch half of Track:
// given the packets about to be tracked, it hashes each and starts loading
// its index slot, then (once those lines arrive) the entry the slot names,
// so that the Track calls that follow find both in the cache. Measured by
// BenchmarkTrackEstablishedBatch. What then limits a batch is how many
// lines the core keeps in flight (about ten), hence entries of two lines.
//
// Prefetch runs without the shard locks (taking them would cost more than
// it saves). It reads only what the writers publish for it: the shard's
// view (the index and the slab's place, replaced as a whole when either
// is reallocated) and the slots, which writers store atomically.
// Everything else it only names to the CPU as an address to prefetch,
// which is not a memory access. A stale view or a slot rewritten
// meanwhile wastes a prefetch and changes nothing: Track decides under the
// lock as it always does.

// view is what a shard publishes for Prefetch.
type view struct {
	slots []uint32
	base  unsafe.Pointer // the slab (shard.base): entry i at base + 128*i, i < cap
	cap   uint32
}

// publish makes the current index and slab visible to Prefetch. Call it
// after replacing either (s.mu held).
func (s *shard) publish() { s.view.Store(&view{slots: s.slots, base: s.base, cap: s.cap}) }

// prefetchBatch is how many packets one pass of Prefetch covers: more
// than the misses a core keeps in flight, few enough that the first
// packet's lines are still cached when its turn comes.
const prefetchBatch = 16

// prefetchProbe is how many slots of a probe Prefetch follows.
const prefetchProbe = 4

// prefetchMinEntries: below this many entries (2 MB of them, a core's L2
// cache on the development VM) the table stays in the
// caches and Prefetch would only add its own hashing, 15-20% of a small
// table's lookup (measured side by side at 1k flows).
const prefetchMinEntries = 16384

// PrefetchPays reports whether the table is large enough for Prefetch to
// save more than it costs; Prefetch does nothing otherwise. Callers that
// must copy packets to batch them can skip the batch when it does not.
func (t *Table) PrefetchPays() bool { return t.count.Load() >= prefetchMinEntries }

// Prefetch starts loading what Track will read for the packets of ps, in
// order. It changes nothing and may be skipped: it only makes the Track
// calls that follow it faster. Worth it for batches of packets in a table
// larger than the CPU caches (see PrefetchPays), as in replay.
func (t *Table) Prefetch(ps []packet.Packet) {
	if t.PrefetchPays() {
		t.prefetchAll(ps)
	}
}

// prefetchAll is Prefetch whatever the table's size.
func (t *Table) prefetchAll(ps []packet.Packet) {
	for len(ps) > 0 {
		n := min(len(ps), prefetchBatch)
		t.prefetch(ps[:n], nil)
		ps = ps[n:]
	}
}

// prefetch prefetches for at most prefetchBatch packets; b, if not nil,
// has their tuples (PrefetchBatch).
func (t *Table) prefetch(ps []packet.Packet, b *Batch) {
	var hs [prefetchBatch]uint64
	var vs [prefetchBatch]*view
	// Stage 1: hash, start loading the home slots.
	for i := range ps {
		var h uint64
		if b != nil {
			if !b.has[i] {
				continue
			}
			h = b.tuples[i].h
		} else {
			p := &ps[i]
			if p.Kind != packet.KindOK || p.Frag.IsFragment {
				continue
			}
			var k Key
			packetKey(&k, p)
			h = t.hash.sum(&k)
		}
		v := t.shard(h).view.Load()
		if v == nil || len(v.slots) == 0 {
			continue
		}
		hs[i], vs[i] = h, v
		prefetch(unsafe.Pointer(&v.slots[slotPos(h)&uint32(len(v.slots)-1)]))
	}
	// Stage 2: the slots have arrived (or are on their way); start
	// loading the entry of the first slot of the probe whose fingerprint
	// agrees. The probe is followed for a few slots, most often on the
	// home slot's cache line; a longer one is left to Track.
	for i := range ps {
		v := vs[i]
		if v == nil {
			continue
		}
		h := hs[i]
		mask := uint32(len(v.slots) - 1)
		pos, fp := slotPos(h)&mask, slotFP(h)
		var sl uint32
		for range prefetchProbe {
			sl = atomic.LoadUint32(&v.slots[pos])
			if sl == 0 || sl&^refMask == fp {
				break
			}
			pos = (pos + 1) & mask
		}
		if sl == 0 || sl&^refMask != fp {
			continue
		}
		x := sl&refMask - 1
		if x >= v.cap {
			continue
		}
		// An entry is two cache lines (128 bytes, the slab page aligned).
		e := unsafe.Add(v.base, uintptr(x)*entrySize)
		prefetch(e)
		prefetch(unsafe.Add(e, 64))
	}
}
